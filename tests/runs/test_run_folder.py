"""An existing MODEL_DIR is never silently replaced, and two trainers never share one.

A finished run is made once; each test works on a copy. Changing what the run is (its identity
bindings) is refused in one line naming each change, with the folder left exactly as it was;
safe changes resume and are recorded; OVERWRITE=True moves the earlier run aside."""
import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from prompt_tuning import train as train_main
from prompt_tuning.runs import run_folder
from tests.runs import runs_testlib
from tests.runs.runs_testlib import TINY

TRAIN = TINY + ["--gin.BATCH_SIZE=8"]


@pytest.fixture(autouse=True)
def _clean_gin():
  yield
  runs_testlib.clear_gin()


@pytest.fixture
def run(finished_run, tmp_path):
  copy = tmp_path / "run"
  shutil.copytree(finished_run, copy)
  return copy


def _error(capsys) -> str:
  lines = [l for l in capsys.readouterr().err.splitlines() if l.startswith("prompt_tuning.")]
  assert len(lines) == 1, lines
  return lines[0]


def _steps(model_dir):
  return [json.loads(l)["step"] for l in open(model_dir / "metrics.jsonl") if "train/loss" in l]


def test_the_reported_rerun_is_refused_in_one_line_and_touches_nothing(run):
  """PROMPT_LENGTH 4 -> 6 on a finished run (it used to start over, overwrite both checkpoints
  and print 16 'Event loop is closed' tracebacks)."""
  before = runs_testlib.tree_digest(run)
  result = runs_testlib.run_cli("train", *TINY, f"--gin.MODEL_DIR={run}", "--gin.PROMPT_LENGTH=6")
  lines = runs_testlib.error_lines(result.stderr)
  assert result.returncode == 2 and len(lines) == 1, result.stderr
  assert lines[0].startswith(f"prompt_tuning.train: error: MODEL_DIR {run} holds a run with other settings")
  assert "PROMPT_LENGTH 4 -> 6" in lines[0] and "--gin.OVERWRITE=True" in lines[0]
  assert "Traceback" not in result.stderr and "Event loop is closed" not in result.stderr
  assert runs_testlib.tree_digest(run) == before


@pytest.mark.parametrize("bindings,shown", [
    (["--gin.SEED=1"], ["SEED 0 -> 1"]),
    (["--gin.BATCH_SIZE=16"], ["BATCH_SIZE 8 -> 16"]),
    (["--gin.PROMPT_PLACEMENT=suffix", "--gin.TASK_FEATURE_LENGTHS={'inputs': 20, 'targets': 4}"],
     ["PROMPT_PLACEMENT 'prefix' -> 'suffix'", "TASK_FEATURE_LENGTHS {'inputs': 24, 'targets': 4} -> {'inputs': 20, 'targets': 4}"]),
    (["--gin.INITIAL_CHECKPOINT_PATH=None"], ["INITIAL_CHECKPOINT_PATH @prompt_tuning.data.quickstart.checkpoint() -> None"]),
    (["--gin.TRAINABLE=['prompt/.*', 'encoder/encoder_norm/.*']"],
     ["TRAINABLE ['prompt/.*'] -> ['prompt/.*', 'encoder/encoder_norm/.*']"]),
])
def test_a_change_of_what_the_run_is_is_refused_naming_it(capsys, run, bindings, shown):
  before = runs_testlib.tree_digest(run)
  assert train_main.main(TRAIN + [f"--gin.MODEL_DIR={run}"] + bindings) == 2
  line = _error(capsys)
  for change in shown:
    assert change in line, line
  assert runs_testlib.tree_digest(run) == before


def test_safe_changes_resume_and_are_recorded(capsys, run):
  saved = (run / "config.gin").read_text()
  assert train_main.main(TRAIN + [f"--gin.MODEL_DIR={run}", "--gin.TRAIN_STEPS=6", "--gin.EVAL_PERIOD=3"]) == 0
  out = capsys.readouterr().out
  assert "resuming from" in out and "(step 4)" in out
  (changed,) = [l for l in out.splitlines() if l.startswith("settings changed since the last start: ")]
  assert "EVAL_PERIOD 2 -> 3" in changed and "TRAIN_STEPS 4 -> 6" in changed  # (and MODEL_DIR: a copy)
  assert (run / "config_history" / "before_step_4.gin").read_text() == saved
  assert "TRAIN_STEPS = 6" in (run / "config.gin").read_text()
  assert _steps(run) == [1, 2, 3, 4, 5, 6]


def test_overwrite_moves_the_earlier_run_aside(capsys, run):
  before = runs_testlib.tree_digest(run)
  assert train_main.main(TRAIN + [f"--gin.MODEL_DIR={run}", "--gin.PROMPT_LENGTH=6", "--gin.OVERWRITE=True"]) == 0
  out = capsys.readouterr().out
  (aside,) = [p for p in run.parent.iterdir() if p.name.startswith("run.replaced-")]
  assert f"OVERWRITE = True: the earlier run in {run} was moved to {aside}" in out
  assert runs_testlib.tree_digest(aside) == before  # all of it, unchanged
  assert "PROMPT_LENGTH = 6" in (run / "config.gin").read_text() and _steps(run) == [1, 2, 3, 4]
  assert "resuming" not in out


def test_a_folder_that_holds_no_run_is_refused(capsys, tmp_path):
  folder = tmp_path / "notes"
  folder.mkdir()
  (folder / "thesis.tex").write_text("...")
  assert train_main.main(TRAIN + [f"--gin.MODEL_DIR={folder}"]) == 2
  assert "holds files no trainer writes (thesis.tex)" in _error(capsys)
  assert os.listdir(folder) == ["thesis.tex"]


def test_a_second_trainer_is_refused_while_the_first_holds_the_folder(capsys, run):
  first = run_folder.Claim(str(run))  # what a running trainer holds
  before = runs_testlib.tree_digest(run)
  try:
    assert train_main.main(TRAIN + [f"--gin.MODEL_DIR={run}", "--gin.TRAIN_STEPS=6"]) == 2
    line = _error(capsys)
    assert f"is in use by another trainer (pid {os.getpid()} on {socket.gethostname()}" in line, line
    assert runs_testlib.tree_digest(run) == before
  finally:
    first.release()
  assert not (run / run_folder.LOCK).exists()


def test_a_crashed_trainer_does_not_leave_the_folder_locked(tmp_path):
  folder = tmp_path / "run"
  folder.mkdir()
  crash = ("import os, signal; from prompt_tuning.runs import run_folder; "
           f"run_folder.Claim({str(folder)!r}); os.kill(os.getpid(), signal.SIGKILL)")
  proc = subprocess.run([sys.executable, "-c", crash], cwd=runs_testlib.REPO)
  assert proc.returncode == -9
  left = json.loads((folder / run_folder.LOCK).read_text())  # the lock file stays behind...
  claim = run_folder.Claim(str(folder))  # ...but not the lock: the kernel dropped it with the process
  try:
    assert claim.took_over["pid"] == left["pid"] != os.getpid()
    assert "did not end cleanly" in run_folder.describe_takeover(claim)
  finally:
    claim.release()
