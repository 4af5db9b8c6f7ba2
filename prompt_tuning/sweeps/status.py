"""How far a run of a sweep got, read from its output folder without changing anything.

A training run is finished when its newest complete checkpoint is at TRAIN_STEPS, or early
stopping ended it (the trainer saves a checkpoint at both); it is started when its folder holds
anything else (resuming continues from the newest checkpoint). An evaluation run is finished once
its metrics.jsonl is written.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Optional

from prompt_tuning.checkpoints import state as state_lib

SCORE = "eval/score"


@dataclasses.dataclass
class Status:
  state: str  # "new", "started" or "finished"
  step: Optional[int] = None  # of the newest complete checkpoint
  best_step: Optional[int] = None
  best_score: Optional[float] = None

  def describe(self) -> str:
    if self.state == "new":
      return "not started"
    text = f"{self.state} at step {self.step}" if self.step is not None else self.state
    if self.best_score is not None:
      text += f", best {SCORE} {self.best_score:.2f} at step {self.best_step}"
    return text


def of(entry: dict) -> Status:
  """The status of a run of the manifest (its `dir`, `entry`, `train_steps`, `early_stopping_patience`)."""
  folder = entry["dir"]
  if not os.path.isdir(folder) or not os.listdir(folder):
    return Status("new")
  if entry["entry"] != "train":
    path = os.path.join(folder, "metrics.jsonl")
    return Status("finished" if os.path.isfile(path) and os.path.getsize(path) else "started")
  for step in reversed(state_lib.checkpoint_steps(folder)):
    meta = state_lib.read_metadata(folder, step)
    if meta is not None:
      return _from_checkpoint(meta, entry)
  return Status("started")


def _from_checkpoint(meta: dict, entry: dict) -> Status:
  data = meta.get("data_state") or {}
  patience = entry.get("early_stopping_patience")
  steps = entry.get("train_steps")
  done = (steps is not None and meta["step"] >= steps) or bool(
      patience and data.get("evals_without_gain", 0) >= patience)
  best = (data.get("best_metrics") or {}).get(SCORE)
  return Status("finished" if done else "started", meta["step"], data.get("best_step"), best)
