"""Prompt files: .npy (the official code's convention) and PEFT adapters, checked with real peft."""
import jax
import numpy as np
import pytest

from prompt_tuning.checkpoints import hf
from prompt_tuning.checkpoints import prompt_io
from prompt_tuning.model import prompted as model_lib
from tests.checkpoints import ckpt_testlib as lib


def test_npy_round_trip_and_checks(tmp_path):
  prompt = {"prompt": {"prompt": jax.numpy.asarray(np.random.default_rng(0).normal(size=(5, 8)), jax.numpy.float32)}}
  path = prompt_io.save_npy(str(tmp_path / "prompts" / "p.npy"), prompt)
  loaded = prompt_io.load_npy(path, (5, 8))
  assert loaded.dtype == np.float32
  np.testing.assert_array_equal(loaded, np.asarray(prompt["prompt"]["prompt"]))
  with pytest.raises(ValueError, match=r"has shape \(5, 8\) but the model expects \(6, 8\)"):
    prompt_io.load_npy(path, (6, 8))
  np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
  with pytest.raises(ValueError):  # never unpickled
    prompt_io.load_npy(str(tmp_path / "obj.npy"))


def test_released_prompt_loads():
  value = prompt_io.load_prompt(lib.PROMPT_5x256, (5, 256))
  assert value.dtype == np.float32 and np.isfinite(value).all()


def test_peft_round_trip_logits_match(hf_t5, tmp_path):
  from peft import PeftModel
  folder, torch_model = hf_t5
  params, cfg = hf.load_hf_t5(folder, config_overrides={"dtype": "float32"})
  prompt = np.random.default_rng(1).normal(size=(4, cfg.emb_dim)).astype(np.float32)
  adapter = prompt_io.save_peft(str(tmp_path / "adapter"), prompt, num_layers=cfg.num_encoder_layers,
                                num_attention_heads=cfg.num_heads, base_model_name_or_path=folder)
  peft_model = PeftModel.from_pretrained(torch_model, adapter).eval()
  np.testing.assert_array_equal(peft_model.get_prompt(batch_size=1)[0].detach().numpy(), prompt)
  module = model_lib.build(cfg, prompt_length=4, placement="prefix")
  inp, dec, tgt = lib.batch(cfg.vocab_size, seed=3)
  ours = jax.jit(module.apply)({"params": model_lib.merge({"prompt": {"prompt": prompt}}, params)}, inp, dec, tgt)
  lib.assert_logits_match(ours, peft_model, inp, dec, tgt)
  np.testing.assert_array_equal(prompt_io.load_prompt(adapter, (4, cfg.emb_dim)), prompt)


def test_reads_what_peft_writes(hf_t5, tmp_path):
  from peft import PromptTuningConfig
  from peft import TaskType
  from peft import get_peft_model
  from transformers import T5ForConditionalGeneration
  base = T5ForConditionalGeneration.from_pretrained(hf_t5[0])
  peft_model = get_peft_model(base, PromptTuningConfig(task_type=TaskType.SEQ_2_SEQ_LM, num_virtual_tokens=3))
  peft_model.save_pretrained(str(tmp_path / "a"))  # PEFT's default: 2 submodules, 6 stored rows
  value = prompt_io.load_peft(str(tmp_path / "a"), (3, 16))
  np.testing.assert_array_equal(value, peft_model.get_prompt(batch_size=1)[0, :3].detach().numpy())  # forward uses [:P]


def test_peft_errors(tmp_path):
  with pytest.raises(FileNotFoundError, match="adapter_config.json"):
    prompt_io.load_peft(str(tmp_path))
  with pytest.raises(ValueError, match="one prompt"):
    prompt_io.save_peft(str(tmp_path / "x"), np.zeros((2, 3, 4), np.float32), num_layers=1, num_attention_heads=1)
