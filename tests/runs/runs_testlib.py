"""Shared helpers for the run tests: tiny quickstart-based settings and CLI invocation."""
import hashlib
import os
import subprocess
import sys

import gin

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The quickstart's frozen model and task, cut down to a few seconds of work.
TINY = ["--gin_file=configs/runs/quickstart.gin", "--gin.PROMPT_LENGTH=4", "--gin.TRAIN_STEPS=4",
        "--gin.EVAL_PERIOD=2", "--gin.CHECKPOINT_PERIOD=2", "--gin.LOG_PERIOD=1",
        "--gin.EVAL_MAX_EXAMPLES=8", "--gin.DROPOUT_RATE=0.0"]


def run_cli(module: str, *args: str, cwd: str = REPO, timeout: int = 300) -> subprocess.CompletedProcess:
  """`python -m prompt_tuning.<module> args...` on one CPU device."""
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
  return subprocess.run([sys.executable, "-m", f"prompt_tuning.{module}", *args], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=timeout)


def error_lines(stderr: str) -> list:
  """stderr without TensorFlow's C++ start-up chatter and progress bars."""
  noise = ("WARNING: All log messages", "I0000", "W0000", "WARNING:absl")
  return [l for l in stderr.splitlines() if l.strip() and not l.startswith(noise)]


def tree_digest(folder) -> str:
  """A hash of every path, mode, size and content under `folder` ('absent' when it does not
  exist): equal digests mean nothing in it was created, changed or removed."""
  if not os.path.exists(folder):
    return "absent"
  digest = hashlib.sha256()
  for root, dirs, files in sorted(os.walk(folder)):
    dirs.sort()
    for name in sorted(dirs) + sorted(files):
      path = os.path.join(root, name)
      info = os.lstat(path)
      digest.update(f"{os.path.relpath(path, folder)}|{info.st_mode}|{info.st_size}|".encode())
      if os.path.isfile(path):
        with open(path, "rb") as f:
          digest.update(f.read())
  return digest.hexdigest()


def clear_gin():
  gin.clear_config(clear_constants=True)
