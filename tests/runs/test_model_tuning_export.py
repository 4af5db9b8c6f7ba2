"""Tuned models as checkpoints of their own (scripts/export_checkpoint.py): a T5X checkpoint that
restore_frozen, prompt tuning and eval read, and a Hugging Face folder transformers loads; the
frozen remainder of a partial tuning comes out bit for bit."""
import json
import os
import sys

import jax
import numpy as np
import pytest
from flax import traverse_util

from prompt_tuning import eval as eval_main
from prompt_tuning import train as train_main
from prompt_tuning.checkpoints import reader
from prompt_tuning.checkpoints import restore
from prompt_tuning.checkpoints import t5x
from prompt_tuning.data import quickstart
from prompt_tuning.model import prompted as model_lib
from prompt_tuning.model import t5
from tests.checkpoints import ckpt_testlib
from tests.runs import runs_testlib
from tests.runs.test_model_tuning_runs import MODEL_TUNING

sys.path.insert(0, os.path.join(runs_testlib.REPO, "scripts"))
import export_checkpoint  # noqa: E402

CFG = t5.T5Config(vocab_size=32128, emb_dim=64, num_heads=4, head_dim=16, num_encoder_layers=2,
                  num_decoder_layers=2, mlp_dim=128, dtype="float32", dropout_rate=0.0)  # the quickstart's


@pytest.fixture(autouse=True)
def _clean_gin():
  yield
  runs_testlib.clear_gin()


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
  """A model-tuned quickstart run (4 steps) and its T5X export."""
  root = tmp_path_factory.mktemp("tuned")
  model_dir, out = str(root / "run"), str(root / "t5x")
  assert train_main.main(MODEL_TUNING + [f"--gin.MODEL_DIR={model_dir}"]) == 0
  runs_testlib.clear_gin()
  assert export_checkpoint.main([model_dir, out, "--step", "4"]) == 0
  return model_dir, out


def _trained(model_dir, step=4):
  return {n: leaf.value() for n, leaf in reader.open_any(os.path.join(model_dir, f"checkpoint_{step}")).params().items()}


def test_the_t5x_export_restores_as_the_tuned_weights_and_prompt_tuning_starts_from_it(tuned, tmp_path, capsys):
  model_dir, out = tuned
  module = model_lib.build(CFG, prompt_length=0)
  restored = jax.tree.map(np.asarray, restore.restore_frozen(module, out, dtype="float32"))
  flat = traverse_util.flatten_dict(restored, sep="/")
  trained = _trained(model_dir)
  assert flat.keys() == trained.keys()
  for name, value in trained.items():
    assert flat[name].tobytes() == value.tobytes(), name
  prompt_run = str(tmp_path / "prompt_on_tuned")
  assert train_main.main(runs_testlib.TINY + ["--gin.BATCH_SIZE=8", f"--gin.MODEL_DIR={prompt_run}",
                                              f"--gin.INITIAL_CHECKPOINT_PATH='{out}'", "--gin.TRAIN_STEPS=2"]) == 0
  assert os.path.exists(os.path.join(prompt_run, "prompts", "prompt_2.npy"))


def test_eval_without_a_prompt_file_evaluates_the_export_as_training_did(tuned, tmp_path, capsys):
  model_dir, out = tuned
  evals = [r for r in map(json.loads, open(os.path.join(model_dir, "metrics.jsonl"))) if "eval/score" in r]
  at_4 = [r for r in evals if r["step"] == 4][0]
  assert eval_main.main(["--gin_file=configs/runs/quickstart_eval.gin", f"--gin.INITIAL_CHECKPOINT_PATH='{out}'",
                         "--gin.PROMPT_FILE=None", f"--gin.EVAL_OUTPUT_DIR={tmp_path / 'eval'}",
                         "--gin.EVAL_MAX_EXAMPLES=8", "--gin.BATCH_SIZE=8"]) == 0
  task = quickstart.task()
  got = json.loads(open(tmp_path / "eval" / "metrics.jsonl").readline())
  assert got[f"eval/{task}/accuracy"] == at_4[f"eval/{task}/accuracy"]
  np.testing.assert_allclose(got[f"eval/{task}/loss"], at_4[f"eval/{task}/loss"], rtol=1e-5)


def test_the_hugging_face_export_loads_in_transformers_with_the_tuned_logits(tuned, tmp_path):
  torch = pytest.importorskip("torch")
  transformers = pytest.importorskip("transformers")
  model_dir, _ = tuned
  out = str(tmp_path / "hf")
  assert export_checkpoint.main([model_dir, out, "--format", "hf", "--step", "4"]) == 0
  params = traverse_util.unflatten_dict(_trained(model_dir), sep="/")  # every weight, as trained
  module = model_lib.build(CFG, prompt_length=0)
  inp, dec, tgt = ckpt_testlib.batch(CFG.vocab_size, batch_size=3, inputs=9, targets=6)
  ours = np.asarray(jax.jit(module.apply)({"params": params}, inp, dec, tgt))
  model = transformers.T5ForConditionalGeneration.from_pretrained(out).eval()
  assert torch.equal(model.lm_head.weight, torch.tensor(params["decoder"]["logits_dense"]["kernel"].T.copy()))
  ckpt_testlib.assert_logits_match(ours, model, inp, dec, tgt)


def test_partial_tuning_exports_the_frozen_remainder_bit_for_bit(tmp_path, capsys):
  model_dir, out = str(tmp_path / "run"), str(tmp_path / "t5x")
  assert train_main.main(runs_testlib.TINY + ["--gin.BATCH_SIZE=8", f"--gin.MODEL_DIR={model_dir}",
                                              "--gin.TRAINABLE=['prompt/.*', 'encoder/.*_norm/scale']"]) == 0
  assert export_checkpoint.main([model_dir, out]) == 0
  exported = {n: leaf.value() for n, leaf in t5x.open_checkpoint(out).params().items()}
  pretrained = {n: leaf.value() for n, leaf in t5x.open_checkpoint(quickstart.checkpoint()).params().items()}
  assert exported.keys() == pretrained.keys()
  tuned = [n for n in exported if model_lib.is_trainable(n, ["encoder/.*_norm/scale"])]
  assert len(tuned) == 5
  for name, value in exported.items():
    if name in tuned:
      assert value.dtype == np.float32 and not np.array_equal(value, pretrained[name].astype(np.float32)), name
    else:
      assert value.dtype == pretrained[name].dtype and value.tobytes() == pretrained[name].tobytes(), name


def test_a_scanned_runs_stacked_layers_export_as_layers_i(tmp_path, capsys):
  model_dir, out = str(tmp_path / "run"), str(tmp_path / "t5x")
  assert train_main.main(MODEL_TUNING + [f"--gin.MODEL_DIR={model_dir}", "--gin.SCAN_LAYERS=True",
                                         "--gin.TRAIN_STEPS=2"]) == 0
  assert export_checkpoint.main([model_dir, out]) == 0
  exported = {n: leaf.value() for n, leaf in t5x.open_checkpoint(out).params().items()}
  stacked = _trained(model_dir, 2)["encoder/layers/mlp/wo/kernel"]
  for i in range(2):
    assert exported[f"encoder/layers_{i}/mlp/wo/kernel"].tobytes() == stacked[i].tobytes()


def test_a_prompt_only_run_has_no_backbone_to_export(tmp_path, capsys):
  model_dir = str(tmp_path / "run")
  assert train_main.main(runs_testlib.TINY + ["--gin.BATCH_SIZE=8", f"--gin.MODEL_DIR={model_dir}",
                                              "--gin.TRAIN_STEPS=2"]) == 0
  capsys.readouterr()
  assert export_checkpoint.main([model_dir, str(tmp_path / "out")]) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("export_checkpoint: error: ") and "trained no backbone parameter" in err
  assert not os.path.exists(tmp_path / "out") and "\n" not in err
