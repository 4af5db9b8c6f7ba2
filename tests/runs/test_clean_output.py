"""What a run prints and writes: no start-up chatter, one clean progress bar, the user's umask."""
import logging
import os
import re
import stat
import subprocess
import sys

import numpy as np
import pytest

from prompt_tuning.checkpoints import prompt_io
from prompt_tuning.config import gin_config
from prompt_tuning.data import tf_startup
from prompt_tuning.runs import metrics_writer
from prompt_tuning.sweeps import plan
from tests.runs import runs_testlib
from tests.runs.runs_testlib import TINY

# Lines TensorFlow 2.21 printed at import on this machine (CPU, no CUDA driver).
NOISE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796157393.634931     356 port.cc:153] oneDNN custom operations are on. You may see "
    "slightly different numerical results due to floating-point round-off errors from different "
    "computation orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.",
    "I0000 00:00:1796157393.640787     356 cudart_stub.cc:31] Could not find cuda drivers on your "
    "machine, GPU will not be used.",
    "I0000 00:00:1796157393.745090     356 cpu_feature_guard.cc:227] This TensorFlow binary is "
    "optimized to use available CPU instructions in performance-critical operations.",
    "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild "
    "TensorFlow with the appropriate compiler flags.",
]
REAL = ["W0000 00:00:1796157393.7 356 port.cc:153] a warning of the same source",
        "E0000 00:00:1796157531.517725 2629 cuda_platform.cc:52] failed call to cuInit",
        "WARNING:absl:a Python warning", "Traceback (most recent call last):"]


CUINIT = ("E0000 00:00:1796158011.675600   10987 cuda_platform.cc:52] failed call to cuInit: INTERNAL: "
          "CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)")


def test_only_tensorflows_known_info_lines_are_noise():
  assert all(tf_startup.is_noise(line) for line in NOISE)
  assert not any(tf_startup.is_noise(line, no_cuda_device=True) for line in REAL)
  assert tf_startup.is_noise(CUINIT, no_cuda_device=True) and not tf_startup.is_noise(CUINIT)


def test_the_filter_passes_everything_else_through(capfd):
  with tf_startup.filtered_stderr():
    os.write(2, ("\n".join(NOISE[:3] + REAL[:2] + NOISE[3:] + REAL[2:]) + "\n").encode())
  assert capfd.readouterr().err.splitlines() == REAL


def test_progress_text(capsys):
  progress = metrics_writer.Progress(total=10, initial=0, batch_size=4, enabled=True)
  progress.update(5, loss=1.25)
  text = str(progress._bar)
  progress.close()
  assert "5/10 [" in text and text.endswith(", loss 1.250, 0.00 steps/s, 0 examples/s]"), text
  assert ", ," not in text


def test_lines_written_to_stderr_during_the_bar_get_their_own_line(capsys):
  before = sys.stderr
  handler = logging.StreamHandler(sys.stderr)  # as logging.basicConfig makes it, holding the stream
  logging.root.addHandler(handler)
  progress = metrics_writer.Progress(total=10, initial=0, batch_size=4, enabled=True)
  progress.update(3, loss=2.0)
  sys.stderr.write("WARNING:absl:Using an uncached FunctionDataset")
  sys.stderr.write(" for training\nsecond line\n")
  handler.handle(logging.makeLogRecord({"msg": "from a handler", "levelno": 30}))
  progress.update(4, loss=2.0)
  progress.close()
  logging.root.removeHandler(handler)
  assert sys.stderr is before and handler.stream is before
  shown = [segment.split("\r")[-1] for segment in capsys.readouterr().err.split("\n")]
  assert "WARNING:absl:Using an uncached FunctionDataset for training" in shown and "second line" in shown
  assert "from a handler" in shown


@pytest.fixture
def umask_027():
  old = os.umask(0o027)
  yield
  os.umask(old)


def _mode(path):
  return stat.S_IMODE(os.stat(path).st_mode)


def test_files_follow_the_umask(tmp_path, umask_027):
  gin_config.parse(["runs/quickstart.gin"])
  assert _mode(gin_config.write_config(str(tmp_path))) == 0o640
  prompt = np.ones((2, 3), np.float32)
  assert _mode(prompt_io.save_npy(str(tmp_path / "p.npy"), prompt)) == 0o640
  adapter = prompt_io.save_peft(str(tmp_path / "peft"), prompt, num_layers=1, num_attention_heads=1)
  assert {_mode(os.path.join(adapter, f)) for f in os.listdir(adapter)} == {0o640}
  assert _mode(plan.write_file(str(tmp_path), "run.sh", "#!/bin/sh\n", executable=True)) == 0o750
  assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp")]
  runs_testlib.clear_gin()


def test_a_training_run_prints_no_chatter_and_writes_with_the_umask(tmp_path):
  model_dir = tmp_path / "run"
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  env.update(JAX_PLATFORMS="cpu", XLA_FLAGS="")
  old = os.umask(0o022)  # the child inherits it
  try:
    result = subprocess.run([sys.executable, "-m", "prompt_tuning.train", *TINY, f"--gin.MODEL_DIR={model_dir}",
                             "--gin.BATCH_SIZE=4"], cwd=runs_testlib.REPO, env=env, capture_output=True,
                            text=True, timeout=600)
  finally:
    os.umask(old)
  assert result.returncode == 0, result.stderr[-3000:]
  shown = [segment.split("\r")[-1] for segment in result.stderr.split("\n")]
  assert not [line for line in shown if tf_startup.is_noise(line)], result.stderr
  assert ", ," not in result.stderr and "steps/s" in result.stderr
  uncached = [line for line in shown if "uncached" in line]
  assert uncached and all(line.startswith("WARNING:absl:Using an uncached") for line in uncached), uncached
  bar = re.compile(r" *\d+%\|.*\| \d+/4 \[.*\] *")
  other = [line for line in shown if line.strip() and not bar.fullmatch(line) and line not in uncached
           and not line.startswith("step ")]
  assert not other, other  # nothing else: no start-up lines, no failed cuInit
  for path in ("config.gin", "prompt_best.npy", "prompts/prompt_4.npy", "metrics.jsonl"):
    assert _mode(model_dir / path) == 0o644, path
