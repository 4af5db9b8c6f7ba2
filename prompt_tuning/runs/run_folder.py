"""A training run's MODEL_DIR: held by one trainer at a time, and never silently replaced.

* `Claim`: MODEL_DIR/.lock, held with an exclusive `flock` while a trainer runs and holding its
  pid, host and start time. A second trainer is refused naming the holder. The kernel drops the
  lock when its process dies, however it dies, so a crashed run never leaves MODEL_DIR stuck:
  the next trainer takes the folder over (and says so).
* `compare`: the settings of the run MODEL_DIR holds (its config.gin) against this run's. A
  difference in an IDENTITY binding (what the trainable state's shapes or the run's meaning
  depend on) is refused in one line naming each change; the rest (TRAIN_STEPS, periods, ...)
  may change on resume, and each start's earlier config.gin is kept in config_history/.
* `move_aside`: what OVERWRITE = True does: the earlier run's files go to a sibling folder
  `MODEL_DIR.replaced-<time>` (never deleted, never mixed with the new run's).
"""
from __future__ import annotations

import dataclasses
import errno
import fcntl
import json
import os
import re
import socket
import time
from typing import Optional

import gin

from prompt_tuning.config import gin_config
from prompt_tuning.config.errors import UsageError

LOCK = ".lock"
CONFIG = "config.gin"
HISTORY = "config_history"
# The gin bindings a resumed run must share with the run it continues: the task and data order,
# the frozen checkpoint, the model's and the prompt's shapes, the trainable set and the optimizer.
# Matched in full against the binding names of config.gin, `%MACRO` values resolved.
IDENTITY = (
    r"DatasetConfig\.(mixture_or_task_name|task_feature_lengths|batch_size|pack)",
    r"RestoreCheckpointConfig\.path",
    r"build\.(prompt_length|placement|num_prompts)",
    r"T5Config\.(vocab_size|emb_dim|num_heads|head_dim|mlp_dim|num_encoder_layers|num_decoder_layers"
    r"|mlp_activations|relative_attention_num_buckets|relative_attention_max_distance)",
    r"TuningConfig\..*",  # the trainable set (TRAINABLE) and the loss it sums
    r"train\.(seed|model|optimizer)",
    r"adafactor\.factored",
)
# What a trainer writes in MODEL_DIR; anything else means the folder is not (only) a run's.
RUN_FILES = re.compile(r"^(config\.gin|metrics\.jsonl|tensorboard|inference_eval|prompts|prompt_best\.npy|"
                       r"checkpoint_\d+|config_history|\.lock|\.tmp-.*)$")


# ----------------------------------------------------------------------------- one trainer at a time


class Claim:
  """MODEL_DIR/.lock held by this process (`release` or process exit frees it)."""

  def __init__(self, model_dir: str):
    self.path = os.path.join(model_dir, LOCK)
    self.took_over = None  # the holder a crashed run left in the lock file, if any
    while True:
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except OSError as err:
        os.close(fd)
        if err.errno not in (errno.EAGAIN, errno.EACCES):
          raise
        raise UsageError(f"MODEL_DIR {model_dir} is in use by another trainer ({_describe(_read(self.path))}): "
                         "two runs must not write one folder; wait for it to end or stop it, or choose "
                         "another MODEL_DIR") from None
      if _same_file(fd, self.path):  # not a lock file a releasing holder just removed
        break
      os.close(fd)
    self._fd = fd
    left = _read(self.path)
    if left:
      self.took_over = left
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(holder).encode())
    os.fsync(fd)

  def release(self) -> None:
    if self._fd is not None:
      os.remove(self.path)  # while still locked: a waiting trainer then retries on a new file
      os.close(self._fd)
      self._fd = None


def _same_file(fd: int, path: str) -> bool:
  try:
    return os.fstat(fd).st_ino == os.stat(path).st_ino
  except FileNotFoundError:
    return False


def _read(path: str) -> Optional[dict]:
  try:
    with open(path) as f:
      return json.loads(f.read() or "null")
  except (OSError, ValueError):
    return None


def _describe(holder: Optional[dict]) -> str:
  if not holder:
    return "no details recorded"
  started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
  return f"pid {holder.get('pid')} on {holder.get('host')}, started {started}"


def describe_takeover(claim: Claim) -> Optional[str]:
  """A note when the lock file named a trainer that ended without releasing it (a crash)."""
  if claim.took_over is None:
    return None
  return f"note: the trainer that last held MODEL_DIR ({_describe(claim.took_over)}) did not end cleanly"


# ----------------------------------------------------------------------------- the run a folder holds


@dataclasses.dataclass
class Changes:
  identity: list  # "NAME old -> new" of IDENTITY bindings that differ
  other: list  # the same for every other binding or macro


def saved_config(model_dir: str) -> Optional[str]:
  path = os.path.join(model_dir, CONFIG)
  if not os.path.isfile(path):
    return None
  with open(path, encoding="utf-8") as f:
    return f.read()


def foreign_files(model_dir: str) -> list:
  """Entries of MODEL_DIR that no trainer writes (a folder of other things, not a run's)."""
  if not os.path.isdir(model_dir):
    return []
  return sorted(n for n in os.listdir(model_dir) if not RUN_FILES.match(n))


def compare(saved: str, current: str) -> Changes:
  """What differs between two config.gin texts, IDENTITY bindings apart (`%MACRO`s resolved; a
  binding one side lacks counts with its default, or is not compared when that is unknown)."""
  old, new = gin_config.resolved_bindings(saved), gin_config.resolved_bindings(current)
  for one, other_side in ((old, new), (new, old)):
    for name in set(other_side) - set(one):
      default = gin_config.default_binding(name)
      if default is not None:
        one[name] = default
  identity, other = [], []
  for name in sorted(set(old) & set(new)):
    if _comparable(old[name].value) == _comparable(new[name].value):
      continue
    shown = new[name].macro or old[name].macro or name
    line = f"{shown} {old[name].text} -> {new[name].text}"
    (identity if any(re.fullmatch(p, name) for p in IDENTITY) else other).append(line)
  return Changes(sorted(set(identity)), sorted(set(other)))


def _comparable(value):
  """Lists and tuples alike (gin binds either for a sequence)."""
  if isinstance(value, (list, tuple)):
    return [_comparable(v) for v in value]
  if isinstance(value, dict):
    return {k: _comparable(v) for k, v in value.items()}
  return value


def refuse_other_run(model_dir: str, changes: Changes) -> None:
  shown = "; ".join(changes.identity[:4]) + (f" and {len(changes.identity) - 4} more" if len(changes.identity) > 4 else "")
  raise UsageError(f"MODEL_DIR {model_dir} holds a run with other settings ({shown}): resuming it with these "
                   "would mix two runs, and it is never replaced silently; use a new MODEL_DIR, or "
                   "--gin.OVERWRITE=True to move the earlier run aside")


def check(model_dir: str, overwrite: bool) -> tuple[Optional[str], Changes]:
  """(the saved config.gin, what changed) of the run MODEL_DIR holds; reads only. Refuses a folder
  holding files no trainer writes, and (unless `overwrite`) a run whose IDENTITY settings differ."""
  saved = saved_config(model_dir)
  foreign = foreign_files(model_dir)
  if foreign and saved is None:
    shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
    raise UsageError(f"MODEL_DIR {model_dir} holds files no trainer writes ({shown}): it is not a run's "
                     "folder, and a run never writes into one; choose a new or empty MODEL_DIR")
  if saved is None or overwrite:
    return saved, Changes([], [])
  changes = compare(saved, gin.config_str())
  if changes.identity:
    refuse_other_run(model_dir, changes)
  return saved, changes


def claim(model_dir: str, overwrite: bool, say) -> Claim:
  """Creates MODEL_DIR if needed and claims it; with `overwrite`, then moves what it held aside."""
  try:
    os.makedirs(model_dir, exist_ok=True)
    held = Claim(model_dir)
  except OSError as err:
    raise UsageError(f"cannot write MODEL_DIR {model_dir} ({err.strerror}): a run writes its checkpoints "
                     "there; fix the folder's permissions or choose another MODEL_DIR") from None
  note = describe_takeover(held)
  if note:
    say(note)
  if overwrite:
    try:
      aside = move_aside(model_dir)
    except OSError as err:
      held.release()
      raise UsageError(f"OVERWRITE = True: cannot move the earlier run in {model_dir} aside ({err}); "
                       "move or delete it yourself, or choose another MODEL_DIR") from None
    if aside:
      say(f"OVERWRITE = True: the earlier run in {model_dir} was moved to {aside}")
  return held


def keep_history(model_dir: str, saved: str, start_step: int) -> str:
  """Keeps the earlier config.gin as config_history/before_step_<start>.gin; returns its path."""
  folder = os.path.join(model_dir, HISTORY)
  os.makedirs(folder, exist_ok=True)
  path = os.path.join(folder, f"before_step_{start_step}.gin")
  with open(path, "w", encoding="utf-8") as f:
    f.write(saved)
  return path


def move_aside(model_dir: str, keep: tuple = (LOCK,)) -> Optional[str]:
  """Moves every entry of MODEL_DIR except `keep` into a new sibling folder
  `<MODEL_DIR>.replaced-<time>` and returns it (None when there was nothing to move)."""
  entries = [n for n in os.listdir(model_dir) if n not in keep]
  if not entries:
    return None
  aside = f"{model_dir.rstrip(os.sep)}.replaced-{time.strftime('%Y%m%d-%H%M%S')}"
  suffix = 0
  while os.path.exists(aside + (f"-{suffix}" if suffix else "")):
    suffix += 1
  aside += f"-{suffix}" if suffix else ""
  os.makedirs(aside)
  for name in entries:
    os.rename(os.path.join(model_dir, name), os.path.join(aside, name))
  return aside
