"""Faults during a run: a full disk while a checkpoint is written, a read-only MODEL_DIR, and a
second trainer on a folder in use. Each ends in one line, leaves the checkpoints saved before
intact, and the same command resumes once the fault is gone.

As root (who ignores file permissions) the faults are real: MODEL_DIR lies on a small tmpfs
that the test fills, or remounts read-only. Elsewhere, permissions make the folder read-only and
the full disk is the Orbax write failing with ENOSPC.
"""
import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
import time

import orbax.checkpoint as ocp
import pytest

from prompt_tuning import train as train_main
from prompt_tuning.checkpoints import state as state_lib
from tests.runs import runs_testlib
from tests.runs.runs_testlib import TINY

TRAIN = TINY + ["--gin.BATCH_SIZE=8"]


@pytest.fixture(autouse=True)
def _clean_gin():
  yield
  runs_testlib.clear_gin()


def _mount(folder, options):
  return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                        capture_output=True).returncode == 0


@pytest.fixture
def disk(tmp_path):
  """A folder on its own 16 MB tmpfs where this process can mount one, else a plain folder."""
  folder = tmp_path / "disk"
  folder.mkdir()
  mounted = os.geteuid() == 0 and _mount(folder, "size=16m")
  yield folder, mounted
  if mounted:
    subprocess.run(["umount", "-l", str(folder)], check=True)


@contextlib.contextmanager
def _fault(kind, folder, mounted, monkeypatch):
  """Makes writes to `folder` fail (`kind`: "full disk" or "read-only") until the block ends."""
  if kind == "read-only":
    if mounted:
      subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    else:
      for root, dirs, files in os.walk(folder):
        for name in dirs + files + [""]:
          os.chmod(os.path.join(root, name), 0o555)
  elif mounted:
    with open(folder / "filler", "wb") as f:
      with contextlib.suppress(OSError):
        while True:
          f.write(b"\0" * 2**16)
          f.flush()
  else:
    def no_space(self, directory, *args, **kwargs):
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(directory))
    monkeypatch.setattr(ocp.Checkpointer, "save", no_space)
  try:
    yield
  finally:
    if kind == "read-only" and mounted:
      subprocess.run(["mount", "-o", "remount,rw", str(folder)], check=True)
    elif kind == "read-only":
      for root, dirs, files in os.walk(folder):
        for name in dirs + files + [""]:
          os.chmod(os.path.join(root, name), 0o755)
    elif mounted:
      os.remove(folder / "filler")
    else:
      monkeypatch.undo()


def _error(capsys) -> str:
  lines = [l for l in capsys.readouterr().err.splitlines() if l.startswith("prompt_tuning.")]
  assert len(lines) == 1, lines
  return lines[0]


def test_a_disk_filling_up_mid_run_keeps_the_last_checkpoint(capsys, monkeypatch, disk):
  folder, mounted = disk
  model_dir = folder / "run"
  real_save = state_lib.TrainCheckpointer.save
  faults = contextlib.ExitStack()

  def save(self, step, *args, **kwargs):
    if step == 4:  # checkpoint_2 is on disk; the disk fills up before checkpoint_4 is written
      faults.enter_context(_fault("full disk", folder, mounted, monkeypatch))
    return real_save(self, step, *args, **kwargs)
  monkeypatch.setattr(state_lib.TrainCheckpointer, "save", save)
  with faults:
    assert train_main.main(TRAIN + [f"--gin.MODEL_DIR={model_dir}"]) == 2
    line = _error(capsys)
  assert line.startswith("prompt_tuning.train: error: training stopped: a write to MODEL_DIR failed "
                         "(No space left on device"), line
  assert "checkpoint_2 is the last finite state" in line and "free disk space" in line, line
  assert state_lib.read_metadata(str(model_dir), 2) is not None and not (model_dir / "checkpoint_4").exists()
  monkeypatch.setattr(state_lib.TrainCheckpointer, "save", real_save)
  # The fault gone, the same command resumes from checkpoint_2 and logs each step once.
  assert train_main.main(TRAIN + [f"--gin.MODEL_DIR={model_dir}"]) == 0
  assert "resuming from" in capsys.readouterr().out
  steps = [json.loads(l)["step"] for l in open(model_dir / "metrics.jsonl") if "train/loss" in l]
  assert steps == [1, 2, 3, 4] and not [n for n in os.listdir(model_dir) if n.startswith(".tmp-")]


def test_a_read_only_model_dir_is_refused_before_anything_runs(capsys, monkeypatch, disk):
  folder, mounted = disk
  model_dir = folder / "run"
  assert train_main.main(TRAIN + [f"--gin.MODEL_DIR={model_dir}"]) == 0
  runs_testlib.clear_gin()
  before = runs_testlib.tree_digest(model_dir)
  with _fault("read-only", folder, mounted, monkeypatch):
    if not mounted and os.geteuid() == 0:
      pytest.skip("root ignores file permissions and no tmpfs can be mounted here")
    assert train_main.main(TRAIN + [f"--gin.MODEL_DIR={model_dir}", "--gin.TRAIN_STEPS=6"]) == 2
    assert f"MODEL_DIR {model_dir} is not writable" in _error(capsys)
  assert runs_testlib.tree_digest(model_dir) == before


def test_a_second_trainer_is_refused_and_a_killed_one_leaves_no_lock(capsys, tmp_path):
  model_dir = tmp_path / "run"
  first = subprocess.Popen([sys.executable, "-m", "prompt_tuning.train", *TRAIN, f"--gin.MODEL_DIR={model_dir}",
                            "--gin.TRAIN_STEPS=100000", "--gin.EVAL_PERIOD=100000", "--gin.CHECKPOINT_PERIOD=100000"],
                           cwd=runs_testlib.REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env={**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""})
  try:
    deadline = time.time() + 240
    while not (model_dir / "config.gin").exists():  # written once the folder is claimed
      assert first.poll() is None and time.time() < deadline, "the first trainer did not start"
      time.sleep(0.5)
    assert train_main.main(TRAIN + [f"--gin.MODEL_DIR={model_dir}"]) == 2
    line = _error(capsys)
    assert f"is in use by another trainer (pid {first.pid} on " in line and "choose another MODEL_DIR" in line
  finally:
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
  runs_testlib.clear_gin()
  assert train_main.main(TRAIN + [f"--gin.MODEL_DIR={model_dir}"]) == 0  # the kill freed the folder
  assert f"pid {first.pid}" in capsys.readouterr().out  # "... did not end cleanly"
