"""No non-finite state is ever saved: the updated state is checked before every checkpoint,
prompt export and prompt_best.npy, and a NaN evaluation score is worse than any number."""
import glob
import math
import os

import gin
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_tuning import train as train_main
from prompt_tuning.runs import train_loop
from tests.runs import runs_testlib
from tests.runs.runs_testlib import TINY

TRAIN = TINY + ["--gin.BATCH_SIZE=8"]


@gin.configurable(module="tests.runs.test_nonfinite")
def exploding_learning_rate(after: int = 2):
  """An optax schedule: 0.3 for the first `after` updates, then large enough to overflow."""
  return lambda count: jnp.where(count >= after, 1e39, 0.3)


@pytest.fixture(autouse=True)
def _clean_gin():
  yield
  runs_testlib.clear_gin()


def _error(capsys) -> str:
  lines = [l for l in capsys.readouterr().err.splitlines() if l.startswith("prompt_tuning.")]
  assert len(lines) == 1, lines
  return lines[0]


def _saved_arrays(model_dir):
  return sorted(glob.glob(os.path.join(model_dir, "prompts", "*.npy")) +
                glob.glob(os.path.join(model_dir, "prompt_best.npy")))


def test_a_state_that_diverges_after_its_update_is_never_saved(capsys, tmp_path):
  """The update of step 3 overflows while the loss of step 3 (computed before it) is finite:
  the run stops naming step 3 and checkpoint_2, and every file written holds finite values."""
  model_dir = tmp_path / "m"
  code = train_main.main(TRAIN + [f"--gin.MODEL_DIR={model_dir}", "--gin.CHECKPOINT_PERIOD=1",
                                  "--gin.EVAL_PERIOD=1", "--gin.TRAIN_STEPS=6",
                                  "--gin.LEARNING_RATE=@tests.runs.test_nonfinite.exploding_learning_rate()"])
  line = _error(capsys)
  assert code == 2
  assert "after the update of step 3" in line and "checkpoint_2 is the last finite state" in line, line
  assert "params/prompt/prompt" in line
  assert sorted(os.listdir(model_dir / "prompts")) == ["prompt_1.npy", "prompt_2.npy"]
  assert not (model_dir / "checkpoint_3").exists() and (model_dir / "checkpoint_2").exists()
  for path in _saved_arrays(model_dir):
    assert np.isfinite(np.load(path)).all(), path


def test_the_reported_divergence_saves_nothing(capsys, tmp_path):
  """LEARNING_RATE 1e39 with a checkpoint every step: the first update overflows, and no
  checkpoint or prompt holding inf is left behind (it used to save both and call them good)."""
  model_dir = tmp_path / "m"
  code = train_main.main(TRAIN + [f"--gin.MODEL_DIR={model_dir}", "--gin.CHECKPOINT_PERIOD=1",
                                  "--gin.LEARNING_RATE=1e39"])
  line = _error(capsys)
  assert code == 2 and "step 1" in line and "no checkpoint was saved" in line, line
  assert not glob.glob(str(model_dir / "checkpoint_*")) and _saved_arrays(model_dir) == []


def test_a_nan_score_is_worse_than_any_number():
  scores = [{"eval/score": math.nan}, {"eval/score": -5.0}, {}, {"eval/score": None}, {"eval/score": 0.5}]
  ranked = sorted(range(len(scores)), key=lambda i: train_loop.score_of(scores[i]), reverse=True)
  assert ranked[:2] == [4, 1]
  assert train_loop.score_of({"eval/score": math.nan}) < train_loop.score_of({"eval/score": -1e30})
