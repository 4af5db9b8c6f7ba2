"""Model tuning and partial tuning through `python -m prompt_tuning.train`: the real path, on the
quickstart model and task and on the T5X fixture with its Adafactor state."""
import json
import re
import os

import numpy as np
import pytest

from prompt_tuning import train as train_main
from prompt_tuning.analysis import summaries
from prompt_tuning.checkpoints import reader
from prompt_tuning.checkpoints import t5x
from prompt_tuning.data import quickstart
from tests.checkpoints import ckpt_testlib
from tests.runs import runs_testlib
from tests.runs.test_errors import _fails
from tests.runs.test_errors import _untouched

SHORT = ["--gin.TRAIN_STEPS=4", "--gin.EVAL_PERIOD=2", "--gin.CHECKPOINT_PERIOD=2", "--gin.LOG_PERIOD=1",
         "--gin.EVAL_MAX_EXAMPLES=8", "--gin.DROPOUT_RATE=0.0", "--gin.BATCH_SIZE=8"]
MODEL_TUNING = ["--gin_file=configs/runs/quickstart_model.gin"] + SHORT
# The tensorstore fixture's architecture, tuned on the quickstart task (same vocabulary).
FIXTURE = MODEL_TUNING + [
    f"--gin.INITIAL_CHECKPOINT_PATH='{ckpt_testlib.TENSORSTORE}'", "--gin.T5Config.emb_dim=4",
    "--gin.T5Config.num_heads=2", "--gin.T5Config.head_dim=2", "--gin.T5Config.mlp_dim=8",
    "--gin.T5Config.relative_attention_num_buckets=4", "--gin.T5Config.relative_attention_max_distance=8"]


@pytest.fixture(autouse=True)
def _clean_gin():
  yield
  runs_testlib.clear_gin()


def _params(model_dir, step):
  """The trainable parameters saved in checkpoint `step`, by T5X name."""
  return {n: leaf.value() for n, leaf in reader.open_any(os.path.join(model_dir, f"checkpoint_{step}")).params().items()}


def test_model_tuning_trains_every_weight_saves_them_and_resumes(capsys, tmp_path):
  """On a (4, 2) mesh with T5X's 2-D parameter partitioning (weights split over both axes)."""
  model_dir = str(tmp_path / "model")
  fsdp = ["--gin.MESH_SHAPE=(4, 2)", "--gin.PARAMETER_PARTITIONING_DIMS=2"]
  assert train_main.main(MODEL_TUNING + fsdp + [f"--gin.MODEL_DIR={model_dir}"]) == 0
  out = capsys.readouterr().out
  assert "quickstart_review_sentiment: validation accuracy" in out
  meta = json.load(open(os.path.join(model_dir, "checkpoint_4", "metadata.json")))
  assert meta["trainable"] == [".*"] and meta["prompt_shape"] is None
  assert not os.path.exists(os.path.join(model_dir, "prompts"))
  assert not os.path.exists(os.path.join(model_dir, "prompt_best.npy"))
  pretrained = {n: leaf.value() for n, leaf in t5x.open_checkpoint(quickstart.checkpoint()).params().items()}
  tuned = _params(model_dir, 4)
  assert tuned.keys() == pretrained.keys()  # every weight is trainable state, in float32
  assert all(v.dtype == np.float32 for v in tuned.values())
  changed = [n for n in tuned if not np.array_equal(tuned[n], pretrained[n].astype(np.float32))]
  assert len(changed) == len(tuned)
  assert train_main.main(MODEL_TUNING + fsdp + [f"--gin.MODEL_DIR={model_dir}", "--gin.TRAIN_STEPS=6"]) == 0
  assert "resuming from" in capsys.readouterr().out and os.path.exists(os.path.join(model_dir, "checkpoint_6"))
  settings = summaries.read_run(model_dir).settings  # summaries tell model tuning from prompt tuning
  assert settings["method"] == "model" and settings["prompt_length"] == 0 and settings["prompt_init"] is None


def test_partial_tuning_saves_exactly_the_matched_parameters(capsys, tmp_path):
  model_dir = str(tmp_path / "partial")
  argv = runs_testlib.TINY + ["--gin.BATCH_SIZE=8", f"--gin.MODEL_DIR={model_dir}",
                              "--gin.TRAINABLE=['prompt/.*', 'encoder/.*_norm/scale', '.*/relpos_bias/.*']"]
  assert train_main.main(argv) == 0
  saved = _params(model_dir, 4)
  assert sorted(saved) == sorted(["prompt/prompt", "encoder/encoder_norm/scale", "encoder/relpos_bias/rel_embedding",
                                  "decoder/relpos_bias/rel_embedding"] +
                                 [f"encoder/layers_{i}/{n}/scale" for i in range(2)
                                  for n in ("pre_attention_layer_norm", "pre_mlp_layer_norm")])
  opt = [n for n in reader.open_any(os.path.join(model_dir, "checkpoint_4")).leaves if "/opt_state/" in n]
  assert opt and all(any(n.endswith(s) for s in saved) or n.endswith("count") for n in opt)
  assert os.path.exists(os.path.join(model_dir, "prompts", "prompt_4.npy"))
  settings = summaries.read_run(model_dir).settings
  assert settings["method"] == "partial prompt/.*,encoder/.*_norm/scale,.*/relpos_bias/.*"
  assert settings["prompt_init"] == "class_labels"


def test_the_fixtures_pretrained_adafactor_state_is_restored_and_continued(capsys, tmp_path):
  model_dir = str(tmp_path / "fixture")
  assert train_main.main(FIXTURE + [f"--gin.MODEL_DIR={model_dir}", "--gin.RESTORE_OPTIMIZER_STATE=True",
                                    "--gin.TRAIN_STEPS=2"]) == 0
  leaves = reader.open_any(os.path.join(model_dir, "checkpoint_2")).leaves
  count = [n for n in leaves if n.endswith("opt_state/0/count")]
  assert int(leaves[count[0]].value()) == 3 + 2  # the fixture was saved at step 3
  fresh = str(tmp_path / "fresh")
  assert train_main.main(FIXTURE + [f"--gin.MODEL_DIR={fresh}", "--gin.TRAIN_STEPS=2"]) == 0
  restarted = reader.open_any(os.path.join(fresh, "checkpoint_2")).leaves
  assert int(restarted[count[0]].value()) == 2


@pytest.mark.parametrize("bindings, needle", [
    (["--gin.TRAINABLE=[]"], "TRAINABLE = [] is not a non-empty list"),
    (["--gin.TRAINABLE=['prompt/.*']"], "PROMPT_LENGTH = 0 leaves no prompt"),
    (["--gin.TRAINABLE=['prompt/.*', 'encoder/.*']"], "(the model has no prompt: PROMPT_LENGTH is 0)"),
    (["--gin.TRAINABLE=['encoder/layer_0/.*']"], "'encoder/layer_0/.*' matches no parameter"),
    (["--gin.RESTORE_OPTIMIZER_STATE=True"], "holds no Adafactor state"),
])
def test_bad_model_tuning_settings_are_one_line_and_write_nothing(capsys, tmp_path, bindings, needle):
  model_dir = tmp_path / "m"
  _fails(capsys, train_main.main, MODEL_TUNING + [f"--gin.MODEL_DIR={model_dir}"] + bindings, needle)
  _untouched(model_dir)


def test_an_optimizer_state_that_does_not_fit_is_one_line_and_writes_nothing(capsys, tmp_path):
  """The fixture's embedding [32128, 4] has a whole second moment; an optimizer that factors
  dimensions of 4 and more expects rows and columns instead."""
  model_dir = tmp_path / "m"
  _fails(capsys, train_main.main, FIXTURE + [f"--gin.MODEL_DIR={model_dir}", "--gin.RESTORE_OPTIMIZER_STATE=True",
                                             "--gin.adafactor.min_dim_size_to_factor=4"],
         "does not fit this optimizer", "RESTORE_OPTIMIZER_STATE = False")
  _untouched(model_dir)


def test_a_mesh_that_cannot_split_the_weights_is_one_line_and_writes_nothing(capsys, tmp_path):
  model_dir = tmp_path / "m"
  _fails(capsys, train_main.main, FIXTURE + [f"--gin.MODEL_DIR={model_dir}", "--gin.PARAMETER_PARTITIONING_DIMS=2"],
         "MESH_SHAPE = (-1, 1) (data 8 x model 1, PARAMETER_PARTITIONING_DIMS = 2) cannot hold the model's "
         "parameters", "cannot be split 8 ways over mesh axis data")
  _untouched(model_dir)


def test_the_quickstart_model_tuned_through_the_cli_beats_the_majority_baseline_by_25_points(tmp_path):
  """100 of runs/quickstart_model.gin's 300 steps on one CPU device (the README: 99.0% at step 100)."""
  result = runs_testlib.run_cli("train", "--gin_file=configs/runs/quickstart_model.gin",
                                f"--gin.MODEL_DIR={tmp_path / 'run'}", "--gin.TRAIN_STEPS=100",
                                "--gin.EVAL_PERIOD=100", "--gin.CHECKPOINT_PERIOD=100")
  assert result.returncode == 0, result.stderr[-2000:]
  found = re.search(r"validation accuracy ([\d.]+)% \(majority-class baseline ([\d.]+)%\) at step 100",
                    result.stdout)
  assert found and float(found[1]) - float(found[2]) >= 25, result.stdout[-2000:]
