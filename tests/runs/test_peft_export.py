"""PEFT adapters from training (PEFT_EXPORT) and from scripts/export_peft.py, run in real PEFT."""
import json
import os
import sys

import jax
import numpy as np
import pytest

from prompt_tuning.checkpoints import hf
from prompt_tuning.checkpoints import prompt_io
from prompt_tuning.checkpoints import restore
from prompt_tuning.checkpoints import shapes
from prompt_tuning.checkpoints import t5x
from prompt_tuning.config.errors import UsageError
from prompt_tuning.model import prompted as model_lib
from prompt_tuning.runs import peft_export
from tests.checkpoints import ckpt_testlib as lib
from tests.runs import runs_testlib
from tests.runs.runs_testlib import TINY
from tests.runs.runs_testlib import run_cli

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")

QUICKSTART = os.path.join(runs_testlib.REPO, "prompt_tuning", "assets", "quickstart", "t5_1_1_tiny_lm")
sys.path.insert(0, os.path.join(runs_testlib.REPO, "scripts"))
import export_peft  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  model_dir = str(tmp_path_factory.mktemp("run") / "model")
  result = run_cli("train", *TINY, f"--gin.MODEL_DIR={model_dir}", "--gin.BATCH_SIZE=4",
                   "--gin.PEFT_EXPORT=True")
  assert result.returncode == 0, result.stderr[-3000:]
  return model_dir


def _peft_logits_match_the_project(adapter, prompt):
  """The adapter on the quickstart backbone in PyTorch gives the project's prompted logits."""
  cfg = shapes.backbone_config(QUICKSTART).replace(dtype="float32", dropout_rate=0.0)
  module = model_lib.build(cfg, prompt_length=prompt.shape[0])
  frozen = restore.restore_frozen(module, QUICKSTART, dtype="float32")
  inp, dec, tgt = lib.batch(cfg.vocab_size)
  params = model_lib.merge({"prompt": {"prompt": jax.numpy.asarray(prompt)}}, frozen)
  ours = jax.jit(module.apply)({"params": params}, inp, dec, tgt)
  base_dir = os.path.join(os.path.dirname(adapter), "hf_base")
  if not os.path.exists(base_dir):
    hf.write_hf_t5(base_dir, t5x.open_checkpoint(QUICKSTART).params(), cfg, dtype="float32")
  from transformers import T5ForConditionalGeneration
  model = peft.PeftModel.from_pretrained(T5ForConditionalGeneration.from_pretrained(base_dir), adapter).eval()
  lib.assert_logits_match(ours, model, inp, dec, tgt)


def test_training_writes_a_peft_adapter_at_every_checkpoint(trained):
  for step in (2, 4):
    adapter = os.path.join(trained, "prompts", f"peft_{step}")
    config = json.load(open(os.path.join(adapter, "adapter_config.json")))
    assert (config["num_layers"], config["num_attention_heads"], config["num_virtual_tokens"]) == (2, 4, 4)
    np.testing.assert_array_equal(prompt_io.load_peft(adapter),
                                  np.load(os.path.join(trained, "prompts", f"prompt_{step}.npy")))
  _peft_logits_match_the_project(os.path.join(trained, "prompts", "peft_4"),
                                 np.load(os.path.join(trained, "prompts", "prompt_4.npy")))


@pytest.mark.parametrize("source", ["model_dir", "checkpoint_step", "t5x", "hf"])
def test_export_peft_reads_the_sizes_from_the_run_or_the_checkpoint(trained, tmp_path, source, capsys):
  prompt = os.path.join(trained, "prompt_best.npy")
  hf_dir = str(tmp_path / "hf")
  if source == "hf":
    hf.write_hf_t5(hf_dir, t5x.open_checkpoint(QUICKSTART).params(), shapes.backbone_config(QUICKSTART))
  path = {"model_dir": trained, "checkpoint_step": os.path.join(trained, "checkpoint_4", "state"),
          "t5x": QUICKSTART, "hf": hf_dir}[source]
  out = str(tmp_path / "adapter")
  assert export_peft.main([prompt, path, out]) == 0
  assert capsys.readouterr().out.strip() == f"wrote {out}"
  config = json.load(open(os.path.join(out, "adapter_config.json")))
  assert (config["num_layers"], config["num_attention_heads"], config["token_dim"]) == (2, 4, 64)
  assert config["base_model_name_or_path"] == (hf_dir if source == "hf" else None)
  np.testing.assert_array_equal(prompt_io.load_peft(out), np.load(prompt))
  if source == "model_dir":
    _peft_logits_match_the_project(out, np.load(prompt))


def test_export_peft_errors_are_one_line(trained, tmp_path, capsys):
  prompt = os.path.join(trained, "prompt_best.npy")
  np.save(tmp_path / "wide.npy", np.zeros((4, 32), np.float32))
  (tmp_path / "exists").mkdir()
  cases = [([prompt, trained, str(tmp_path / "exists")], "already exists"),
           ([str(tmp_path / "wide.npy"), trained, str(tmp_path / "a")], "has shape (4, 32)"),
           ([prompt, str(tmp_path), str(tmp_path / "b")], "cannot read the model sizes"),
           ([str(tmp_path / "none.npy"), trained, str(tmp_path / "c")], "does not exist")]
  for argv, needle in cases:
    assert export_peft.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("export_peft: error: ") and needle in err[0], err
  assert sorted(os.listdir(tmp_path)) == ["exists", "wide.npy"]


def test_peft_export_refuses_what_peft_cannot_place():
  cfg = lib.tiny_cfg()
  with pytest.raises(UsageError, match="placement 'suffix'"):
    peft_export.peft_settings(model_lib.build(cfg, prompt_length=2, placement="suffix"), None)
  assert peft_export.peft_settings(model_lib.build(cfg, prompt_length=2), QUICKSTART) == {
      "num_layers": 1, "num_attention_heads": 2, "base_model_name_or_path": None}
