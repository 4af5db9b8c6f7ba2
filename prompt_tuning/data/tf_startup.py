"""TensorFlow for the data pipeline, imported once: without its start-up chatter, without the GPUs.

Importing TensorFlow 2.16+ prints, twice (two of its libraries each log before absl is set
up), "All log messages before absl::InitializeLog() ...", the oneDNN notice and "Could not
find cuda drivers", all INFO lines written straight to file descriptor 2, which
TF_CPP_MIN_LOG_LEVEL does not reach. While TensorFlow loads, descriptor 2 goes through a
filter that drops exactly those known INFO lines and passes everything else on, so real
warnings and errors still show. TF_CPP_MIN_LOG_LEVEL defaults to 1 (INFO off, warnings on).

TensorFlow only feeds the input pipeline here; JAX owns the accelerators. As in T5X, the GPUs
are hidden from TensorFlow so that it does not reserve their memory. Where the CUDA driver sees
no device (or is not installed), TensorFlow's own device probe, which logs a failed cuInit as an
error on such machines, runs inside the filter and that one line is dropped.
"""
from __future__ import annotations

import contextlib
import ctypes.util
import os
import re
import sys
import threading

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

# Known INFO lines of TensorFlow's import (the I<mmdd> prefix is absl's INFO level).
_NOISE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|I\d{4} [\d:.]+ +\d+ (port|cudart_stub|cpu_feature_guard)\.cc:\d+\] .*"
    r"|To enable the following instructions: .* in other operations, rebuild TensorFlow .*")
# TensorFlow's failed cuInit, an error line on every machine without a usable CUDA device (it
# asks even where no driver is installed): dropped only where the driver has told us as much.
_NO_DEVICE = re.compile(r"E\d{4} [\d:.]+ +\d+ cuda_platform\.cc:\d+\] failed call to cuInit: .*")


def is_noise(line: str, no_cuda_device: bool = False) -> bool:
  line = line.rstrip("\r\n")
  return bool(_NOISE.fullmatch(line) or (no_cuda_device and _NO_DEVICE.fullmatch(line)))


@contextlib.contextmanager
def filtered_stderr(no_cuda_device: bool = False):
  """Descriptor 2 through `is_noise` for the duration; other lines are passed on as they come."""
  sys.stderr.flush()
  saved = os.dup(2)
  read_end, write_end = os.pipe()
  os.dup2(write_end, 2)
  os.close(write_end)

  def forward():
    with os.fdopen(read_end, "rb") as pipe:
      for raw in pipe:
        if not is_noise(raw.decode("utf-8", "replace"), no_cuda_device):
          os.write(saved, raw)
  thread = threading.Thread(target=forward, daemon=True)
  thread.start()
  try:
    yield
  finally:
    sys.stderr.flush()
    os.dup2(saved, 2)  # closes the pipe's last write end: the reader drains and stops
    thread.join()
    os.close(saved)


def _cuda_devices() -> int:
  """How many CUDA devices the driver sees (0 without a driver), asked of the driver itself."""
  name = ctypes.util.find_library("cuda")
  if not name:
    return 0
  try:
    driver, count = ctypes.CDLL(name), ctypes.c_int(0)
    if driver.cuInit(0) != 0 or driver.cuDeviceGetCount(ctypes.byref(count)) != 0:
      return 0
  except (OSError, AttributeError):
    return 0
  return count.value


_DEVICES = _cuda_devices()
with filtered_stderr(no_cuda_device=not _DEVICES):
  import tensorflow as tf  # noqa: E402
  try:
    if _DEVICES:
      tf.config.set_visible_devices([], "GPU")
    else:  # TensorFlow's own cuInit attempt, made here, inside the filter, rather than later
      tf.config.list_physical_devices("GPU")
  except RuntimeError:  # TensorFlow was started before this module: too late to hide them
    pass
