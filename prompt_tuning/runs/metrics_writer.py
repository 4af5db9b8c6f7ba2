"""Where a run reports: MODEL_DIR/metrics.jsonl, TensorBoard event files, and a progress bar.

metrics.jsonl holds one JSON object per line, `{"step": 1000, "train/loss": 3.2, ...}`, appended
and flushed as they happen, so it can be tailed or loaded with `pandas.read_json(lines=True)`.
TensorBoard files go to MODEL_DIR/tensorboard (tensorboardX: no TensorFlow needed).

A resumed run (`start_step` > 0) continues the log of the run it resumes as if it had never
stopped: the lines of steps after `start_step` (logged after the checkpoint it resumes from, by a
run that was then killed) are dropped from metrics.jsonl, and each writer opens a new event file
starting with a SessionLog START event at its first step, which makes TensorBoard discard the
earlier files' events from that step on (its rule for restarted runs).
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

from prompt_tuning.checkpoints import state as state_lib
from prompt_tuning.config import fileio
from prompt_tuning.parallel import multihost


class MetricsWriter:
  """Appends scalar metrics to metrics.jsonl and TensorBoard."""

  def __init__(self, model_dir: str, tensorboard: bool = True, enabled: bool = True, start_step: int = 0):
    """`enabled=False` (hosts other than the primary one in a multi-host job) writes nothing;
    `start_step`: the step the run resumes from (0: a new run)."""
    self.model_dir = model_dir
    self.path = os.path.join(model_dir, "metrics.jsonl")
    self._file = self._tb = None
    if not enabled:
      return
    os.makedirs(model_dir, exist_ok=True)
    _keep_until(self.path, start_step)
    self._file = open(self.path, "a", encoding="utf-8")
    if tensorboard:
      try:
        self._tb = _EventFile(os.path.join(model_dir, "tensorboard"), start_step)
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
      self._tb.flush()

  def write_inferences(self, step: int, evaluator, metrics: Mapping[str, float], outputs: Mapping) -> None:
    """T5X's per-evaluation files (seqio's JSONLogger, under MODEL_DIR/inference_eval/): for
    each task `<task>-<step:06d>.jsonl`, one row per example ({"input", "target", "prediction"
    or "score"}), and a line {"step", <metric>: value} in `<task>-metrics.jsonl` (rewritten
    without the lines of this and later steps, which a resumed run evaluates again)."""
    if self._file is None:
      return
    folder = os.path.join(self.model_dir, INFERENCE_EVAL)
    for data in evaluator.tasks:
      name = data.task.name
      rows = [{**row, "input": _summarized(row["input"])}
              for row in evaluator.inference_rows(data, outputs[name])]
      write_jsonl(os.path.join(folder, f"{name}-{int(step):06d}.jsonl"), rows)
      prefix = f"eval/{name}/"
      values = {k[len(prefix):]: v for k, v in metrics.items()
                if k.startswith(prefix) and k[len(prefix):] not in ("loss", "token_accuracy")}
      path = os.path.join(folder, f"{name}-metrics.jsonl")
      kept = [row for row in read_jsonl(path) if row.get("step", -1) < step] if os.path.exists(path) else []
      write_jsonl(path, kept + [{"step": int(step), **values}])

  def close(self) -> None:
    """Closes both logs; a failure to flush them (e.g. a full disk) is logged, not raised, so
    that it does not hide the error that stopped the run."""
    for log in (self._file, self._tb):
      try:
        if log is not None:
          log.close()
      except OSError as err:
        logging.warning("could not close a metrics log (%s)", err)
    self._file = self._tb = None


class _EventFile:
  """One TensorBoard event file, written in the calling thread. (tensorboardX's SummaryWriter
  queues events for a background thread, and its flush() does not wait for that queue, so a run
  killed right after a checkpoint could lose the events of the steps before it.)"""

  def __init__(self, folder: str, start_step: int):
    from tensorboardX import event_file_writer, summary
    from tensorboardX.proto import event_pb2
    self._event_pb2, self._summary = event_pb2, summary
    os.makedirs(folder, exist_ok=True)
    # Event files are named by the second they open in; the start step keeps two starts within
    # one second apart (and in order).
    self._writer = event_file_writer.EventsWriter(os.path.join(folder, "events"),
                                                  filename_suffix=f".start_{start_step:010d}")
    start = event_pb2.SessionLog(status=event_pb2.SessionLog.START)
    self._writer.write_event(event_pb2.Event(wall_time=time.time(), step=start_step + 1, session_log=start))
    self._writer.flush()

  def add_scalar(self, name: str, value: float, step: int) -> None:
    self._writer.write_event(self._event_pb2.Event(
        wall_time=time.time(), step=step, summary=self._summary.scalar(name, value)))

  def flush(self) -> None:
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()


def _keep_until(path: str, step: int) -> None:
  """Rewrites metrics.jsonl (atomically) with only its lines up to `step`; a torn last line (a
  run killed while writing) goes too."""
  if not os.path.exists(path):
    return
  kept, dropped = [], 0
  with open(path, encoding="utf-8") as f:
    for line in f:
      try:
        row = json.loads(line)
      except ValueError:
        row = None
      if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= step:
        kept.append(line if line.endswith("\n") else line + "\n")
      else:
        dropped += line.strip() != ""
  if dropped:
    fileio.atomic_write_text(path, "".join(kept))


INFERENCE_EVAL = "inference_eval"


def _scalar(value) -> Optional[float]:
  value = float(np.asarray(value))
  return value if math.isfinite(value) else None  # JSON has no NaN/inf


def jsonable(value):
  """`value` for json.dumps: text for bytes, lists for arrays, numbers for numpy scalars."""
  if isinstance(value, bytes):
    return value.decode("utf-8", "replace")
  if isinstance(value, np.ndarray):
    return value.tolist()
  if isinstance(value, np.generic):
    return value.item()
  return float(value) if np.ndim(value) == 0 else str(value)


_MAX_LISTED = 32  # as seqio's inference logs: longer arrays (token ids) are only described


def _summarized(example: Mapping) -> dict:
  return {k: (f"array of shape {tuple(v.shape)}, {v.dtype}" if isinstance(v, np.ndarray) and v.size > _MAX_LISTED
              else v) for k, v in example.items()}


def write_jsonl(path: str, rows) -> None:
  """`rows` as JSON lines, written atomically with the user's umask; in a multi-host job only
  the primary host writes."""
  if not multihost.is_primary():
    return

  def write(tmp):
    with open(tmp, "w", encoding="utf-8") as f:
      for row in rows:
        f.write(json.dumps(state_lib.strict_json(row), default=jsonable, allow_nan=False) + "\n")
  fileio.atomic_write(path, write)


def read_jsonl(path: str) -> list:
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


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
