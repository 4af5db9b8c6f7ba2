"""Hugging Face T5 1.1 weights imported under T5X names: logits match transformers."""
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import traverse_util
from safetensors.numpy import save_file

from prompt_tuning.checkpoints import hf
from prompt_tuning.model import prompted as model_lib
from tests.checkpoints import ckpt_testlib as lib


def test_untied_lm_head_is_saved_apart(hf_t5):
  folder, torch_model = hf_t5
  weights = hf.read_safetensors(os.path.join(folder, "model.safetensors"))
  assert not np.array_equal(weights["lm_head.weight"], weights["shared.weight"])
  np.testing.assert_array_equal(weights["lm_head.weight"], torch_model.lm_head.weight.detach().numpy())


def test_logits_match_transformers(hf_t5):
  folder, torch_model = hf_t5
  params, cfg = hf.load_hf_t5(folder, config_overrides={"dtype": "float32"})
  assert (cfg.emb_dim, cfg.num_heads, cfg.head_dim, cfg.mlp_dim) == (16, 3, 4, 32)
  assert (cfg.num_encoder_layers, cfg.num_decoder_layers, cfg.relative_attention_num_buckets) == (2, 3, 8)
  np.testing.assert_array_equal(params["decoder"]["logits_dense"]["kernel"],
                                torch_model.lm_head.weight.detach().numpy().T)
  module = model_lib.build(cfg, prompt_length=0)
  inp, dec, tgt = lib.batch(cfg.vocab_size)
  ours = jax.jit(module.apply)({"params": params}, inp, dec, tgt)
  lib.assert_logits_match(ours, torch_model, inp, dec, tgt)


def test_pytorch_bin_matches_safetensors(hf_t5, tmp_path):
  folder, torch_model = hf_t5
  shutil.copy(os.path.join(folder, "config.json"), tmp_path)
  torch.save({k: v.to(torch.bfloat16) if k == "shared.weight" else v
              for k, v in torch_model.state_dict().items()}, tmp_path / "pytorch_model.bin")
  from_bin = traverse_util.flatten_dict(hf.load_hf_t5(str(tmp_path))[0], sep="/")
  from_st = traverse_util.flatten_dict(hf.load_hf_t5(folder)[0], sep="/")
  assert from_bin["token_embedder/embedding"].dtype == jnp.bfloat16  # stored dtype kept
  for name, value in from_st.items():
    np.testing.assert_allclose(np.asarray(from_bin[name], np.float32), value, atol=1e-2, err_msg=name)


def _copy_with(folder, dst, config_changes=None, drop=()):
  os.makedirs(dst, exist_ok=True)
  config = hf.read_hf_config(folder)
  config.update(config_changes or {})
  with open(os.path.join(dst, "config.json"), "w") as f:
    json.dump(config, f)
  weights = {k: np.array(v) for k, v in hf.read_safetensors(os.path.join(folder, "model.safetensors")).items()
             if k not in drop}
  save_file(weights, os.path.join(dst, "model.safetensors"))
  return str(dst)


@pytest.mark.parametrize("changes,message", [
    ({"feed_forward_proj": "relu"}, "original T5, not T5 1.1"),
    ({"scale_decoder_outputs": True}, "separate lm_head"),
    ({"model_type": "bart"}, "not T5"),
])
def test_refuses_non_t5_1_1(hf_t5, tmp_path, changes, message):
  path = _copy_with(hf_t5[0], tmp_path / "m", changes)
  with pytest.raises(ValueError, match=message):
    hf.load_hf_t5(path)


def test_pre_v5_config_is_accepted(hf_t5, tmp_path):
  config = {"tie_word_embeddings": False}
  path = _copy_with(hf_t5[0], tmp_path / "m", config)
  with open(os.path.join(path, "config.json")) as f:
    stored = json.load(f)
  stored.pop("scale_decoder_outputs", None)
  with open(os.path.join(path, "config.json"), "w") as f:
    json.dump(stored, f)
  assert hf.load_hf_t5(path)[1].emb_dim == 16


def test_refuses_missing_lm_head(hf_t5, tmp_path):
  path = _copy_with(hf_t5[0], tmp_path / "m", drop=("lm_head.weight",))
  with pytest.raises(ValueError, match="no lm_head.weight"):
    hf.load_hf_t5(path)


def test_missing_files_say_what_to_pass(tmp_path):
  with pytest.raises(FileNotFoundError, match="config.json"):
    hf.load_hf_t5(str(tmp_path))
