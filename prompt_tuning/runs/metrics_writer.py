"""Where a run reports: MODEL_DIR/metrics.jsonl, TensorBoard event files, and a progress bar.

metrics.jsonl holds one JSON object per line, `{"step": 1000, "train/loss": 3.2, ...}`, appended
and flushed as they happen, so it can be tailed or loaded with `pandas.read_json(lines=True)`.
TensorBoard files go to MODEL_DIR/tensorboard (tensorboardX: no TensorFlow needed).
"""
from __future__ import annotations

import io
import json
import logging
import math
import os
import sys
import time
from typing import Mapping, Optional

import numpy as np


class MetricsWriter:
  """Appends scalar metrics to metrics.jsonl and TensorBoard."""

  def __init__(self, model_dir: str, tensorboard: bool = True, enabled: bool = True):
    """`enabled=False` (hosts other than the primary one in a multi-host job) writes nothing."""
    self.path = os.path.join(model_dir, "metrics.jsonl")
    self._file = self._tb = None
    if not enabled:
      return
    os.makedirs(model_dir, exist_ok=True)
    self._file = open(self.path, "a", encoding="utf-8")
    if tensorboard:
      try:
        from tensorboardX import SummaryWriter
        self._tb = SummaryWriter(os.path.join(model_dir, "tensorboard"), flush_secs=30)
      except Exception as err:  # noqa: BLE001 - TensorBoard is optional
        logging.warning("no TensorBoard logging (%s); metrics.jsonl is still written", err)

  def write(self, step: int, metrics: Mapping[str, float]) -> None:
    if self._file is None:
      return
    values = {k: _scalar(v) for k, v in metrics.items()}
    self._file.write(json.dumps({"step": int(step), **values}) + "\n")
    self._file.flush()
    if self._tb is not None:
      for name, value in values.items():
        if value is not None:
          self._tb.add_scalar(name, value, int(step))

  def close(self) -> None:
    if self._file is not None:
      self._file.close()
    if self._tb is not None:
      self._tb.close()


def _scalar(value) -> Optional[float]:
  value = float(np.asarray(value))
  return value if math.isfinite(value) else None  # JSON has no NaN/inf


class Progress:
  """A tqdm bar over training steps showing loss, steps/s, examples/s and the ETA.

  While it shows, `sys.stderr` (and the root logger's handlers that write to it) print whole
  lines above the bar (through `tqdm.write`), so a warning logged mid-run (absl, `warnings`)
  gets its own line instead of landing inside the bar.
  """

  def __init__(self, total: int, initial: int, batch_size: int, enabled: Optional[bool] = None):
    from tqdm.auto import tqdm
    self.batch_size = batch_size
    self._bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True,
                     mininterval=1.0, file=sys.stderr, smoothing=0.1,
                     disable=False if enabled is None else not enabled,
                     bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]")
    self._last = (time.time(), initial)
    self.rates = (0.0, 0.0)
    self._stderr, self._handlers = None, []
    if not self._bar.disable:
      self._stderr, sys.stderr = sys.stderr, _LinesAboveBar(self._bar, sys.stderr)
      # Logging handlers made earlier (logging.basicConfig) hold the stream itself.
      self._handlers = [h for h in logging.root.handlers
                        if isinstance(h, logging.StreamHandler) and h.stream is self._stderr]
      for handler in self._handlers:
        handler.setStream(sys.stderr)

  def update(self, step: int, loss: Optional[float] = None) -> None:
    now = time.time()
    t0, s0 = self._last
    if now - t0 >= 1.0:
      steps_per_s = (step - s0) / (now - t0)
      self.rates = (steps_per_s, steps_per_s * self.batch_size)
      self._last = (now, step)
    postfix = f"{self.rates[0]:.2f} steps/s, {self.rates[1]:.0f} examples/s"
    if loss is not None:
      postfix = f"loss {loss:.3f}, " + postfix
    self._bar.set_postfix_str(postfix, refresh=False)  # tqdm puts ", " before it
    self._bar.update(step - self._bar.n)

  def write(self, message: str) -> None:
    self._bar.write(message, file=self._stderr or sys.stderr)

  def close(self) -> None:
    if self._stderr is not None:
      sys.stderr.flush()
      for handler in self._handlers:
        handler.setStream(self._stderr)
      sys.stderr, self._stderr, self._handlers = self._stderr, None, []
    self._bar.close()


class _LinesAboveBar(io.TextIOBase):
  """A stand-in for sys.stderr that prints each complete line above a tqdm bar."""

  def __init__(self, bar, stream):
    super().__init__()
    self._bar, self._stream, self._partial = bar, stream, ""

  def write(self, text: str) -> int:
    self._partial += text
    *lines, self._partial = self._partial.split("\n")
    for line in lines:
      self._bar.write(line, file=self._stream)
    return len(text)

  def flush(self) -> None:
    if self._partial:
      self._bar.write(self._partial, file=self._stream)
      self._partial = ""
    self._stream.flush()

  def fileno(self) -> int:
    return self._stream.fileno()

  def isatty(self) -> bool:
    return self._stream.isatty()

  @property
  def encoding(self):
    return getattr(self._stream, "encoding", "utf-8")
