"""Bad input ends with one line on stderr, a non-zero exit, and nothing written to MODEL_DIR."""
import os

import jax
import numpy as np
import pytest

from prompt_tuning import eval as eval_main
from prompt_tuning import infer as infer_main
from prompt_tuning import train as train_main
from tests.runs import runs_testlib
from tests.runs.runs_testlib import TINY

# In-process runs see the tests' 8 CPU devices: batch 8 splits over them.
TRAIN = TINY + ["--gin.BATCH_SIZE=8"]


@pytest.fixture(autouse=True)
def _clean_gin():
  yield
  runs_testlib.clear_gin()


def _fails(capsys, main, argv, *needles):
  code = main(argv)
  err = [l for l in capsys.readouterr().err.splitlines() if l.startswith("prompt_tuning.")]
  assert code != 0
  assert len(err) == 1, err
  for needle in needles:
    assert needle in err[0], err[0]
  return err[0]


def _untouched(model_dir):
  assert not os.path.exists(model_dir) or not os.listdir(model_dir)


def test_missing_gin_file(capsys, tmp_path):
  _fails(capsys, train_main.main, ["--gin_file=runs/no_such_run.gin"], "no_such_run.gin", "not found")


def test_unknown_binding(capsys, tmp_path):
  _fails(capsys, train_main.main, TRAIN + [f"--gin.MODEL_DIR={tmp_path}/m", "--gin.NOT_A_THING.x=1"],
         "NOT_A_THING")
  _untouched(tmp_path / "m")


def test_required_macro_not_set(capsys):
  _fails(capsys, train_main.main, ["--gin_file=models/t5_1_1_small_prompt.gin",
                                   "--gin_file=runs/prompt_finetune.gin"], "MODEL_DIR is not set")


def test_unknown_task(capsys, tmp_path):
  _fails(capsys, train_main.main, TRAIN + [f"--gin.MODEL_DIR={tmp_path}/m",
                                           "--gin.MIXTURE_OR_TASK_NAME=no_such_task"],
         "unknown task", "no_such_task")
  _untouched(tmp_path / "m")


def test_missing_checkpoint(capsys, tmp_path):
  _fails(capsys, train_main.main, TRAIN + [f"--gin.MODEL_DIR={tmp_path}/m",
                                           f"--gin.INITIAL_CHECKPOINT_PATH={tmp_path}/nothing"],
         "does not exist", "INITIAL_CHECKPOINT_PATH")
  _untouched(tmp_path / "m")


def test_checkpoint_of_another_size(capsys, tmp_path):
  _fails(capsys, train_main.main, TRAIN + [f"--gin.MODEL_DIR={tmp_path}/m", "--gin.T5Config.emb_dim=32"],
         "cannot restore", "shape")
  _untouched(tmp_path / "m")


def test_prompt_file_missing_or_of_the_wrong_shape(capsys, tmp_path):
  argv = ["--gin_file=runs/quickstart_eval.gin", "--gin.PROMPT_LENGTH=4", f"--gin.EVAL_OUTPUT_DIR={tmp_path}/out"]
  _fails(capsys, eval_main.main, argv + [f"--gin.PROMPT_FILE={tmp_path}/none.npy"], "does not exist")
  np.save(tmp_path / "p.npy", np.zeros((4, 5), np.float32))
  _fails(capsys, eval_main.main, argv + [f"--gin.PROMPT_FILE={tmp_path}/p.npy"], "(4, 5)", "(4, 64)")
  np.save(tmp_path / "q.npy", np.zeros((3, 64), np.float32))  # the length is the file's, unless given
  _fails(capsys, eval_main.main, argv + [f"--gin.PROMPT_FILE={tmp_path}/q.npy"],
         "--gin.PROMPT_LENGTH=4 disagrees with prompt file", "holds 3 prompt vectors")
  _untouched(tmp_path / "out")


def test_nan_loss_stops_with_a_message(capsys, tmp_path):
  line = _fails(capsys, train_main.main, TRAIN + [f"--gin.MODEL_DIR={tmp_path}/m", "--gin.LEARNING_RATE=1e39",
                                                  "--gin.EVAL_PERIOD=100"], "training stopped", "LEARNING_RATE")
  assert "step 2" in line or "step 3" in line


def test_resume_continues_exactly(capsys, tmp_path):
  """Deterministic given the seed, and resuming (data position included) changes nothing."""
  straight, resumed = tmp_path / "a", tmp_path / "b"
  assert train_main.main(TRAIN + [f"--gin.MODEL_DIR={straight}"]) == 0
  assert train_main.main(TRAIN + [f"--gin.MODEL_DIR={resumed}", "--gin.TRAIN_STEPS=2"]) == 0
  assert train_main.main(TRAIN + [f"--gin.MODEL_DIR={resumed}"]) == 0
  assert "resuming from" in capsys.readouterr().out
  a = np.load(straight / "prompts" / "prompt_4.npy")
  b = np.load(resumed / "prompts" / "prompt_4.npy")
  np.testing.assert_array_equal(a, b)


def test_resume_keeps_the_early_stopping_state(capsys, tmp_path):
  """Evaluations without gain and the best evaluation survive a restart: a resumed run stops at
  the step, and keeps the best, that the uninterrupted run does."""
  stopping = ["--gin.EVAL_PERIOD=1", "--gin.EARLY_STOPPING_PATIENCE=2", "--gin.TRAIN_STEPS=8"]
  straight, resumed = tmp_path / "a", tmp_path / "b"
  assert train_main.main(TRAIN + stopping + [f"--gin.MODEL_DIR={straight}"]) == 0
  out_straight = capsys.readouterr().out
  assert train_main.main(TRAIN + stopping + [f"--gin.MODEL_DIR={resumed}", "--gin.TRAIN_STEPS=2"]) == 0
  capsys.readouterr()
  assert train_main.main(TRAIN + stopping + [f"--gin.MODEL_DIR={resumed}"]) == 0
  out_resumed = capsys.readouterr().out
  done = lambda out: next(l for l in out.splitlines() if l.startswith("done:"))
  assert done(out_straight) == done(out_resumed).replace(str(resumed), str(straight))
  np.testing.assert_array_equal(np.load(straight / "prompt_best.npy"), np.load(resumed / "prompt_best.npy"))


@pytest.mark.parametrize("binding,needle", [("REMAT=some", "unknown remat 'some'"),
                                            ("ATTENTION=flash", "unknown attention 'flash'"),
                                            ("PROMPT_PLACEMENT=middle", "unknown prompt placement"),
                                            pytest.param("ATTENTION=cudnn", "NVIDIA GPUs only", marks=pytest.mark.skipif(
                                                jax.default_backend() == "gpu", reason="cuDNN is there"))])
def test_unknown_model_setting(capsys, tmp_path, binding, needle):
  _fails(capsys, train_main.main, TRAIN + [f"--gin.MODEL_DIR={tmp_path}/m", f"--gin.{binding}"],
         needle, "choose one of")
  _untouched(tmp_path / "m")


@pytest.mark.parametrize("main, flags, macro", [
    (train_main.main, TRAIN, "MODEL_DIR"),
    (eval_main.main, ["--gin_file=runs/quickstart_eval.gin"], "EVAL_OUTPUT_DIR"),
])
def test_output_folder_in_a_bucket_is_refused_before_writing(capsys, tmp_path, monkeypatch, main, flags, macro):
  monkeypatch.chdir(tmp_path)  # a URL taken as a local path would create ./gs:/...
  _fails(capsys, main, flags + [f"--gin.{macro}=gs://bucket/run"], macro, "not a local folder", "gcsfuse")
  assert os.listdir(tmp_path) == []


def test_several_prompt_files_are_for_eval_not_infer(capsys, tmp_path):
  files = [str(tmp_path / f"p{i}.npy") for i in range(2)]
  for f in files:
    np.save(f, np.zeros((4, 64), np.float32))
  _fails(capsys, infer_main.main, ["--gin_file=runs/quickstart_infer.gin", "--gin.PROMPT_LENGTH=4",
                                   f"--gin.PROMPT_FILE={files}", f"--gin.INFER_OUTPUT_DIR={tmp_path}/out"],
         "PROMPT_FILE lists several prompts", "prompt_tuning.eval")
  assert not (tmp_path / "out").exists()
