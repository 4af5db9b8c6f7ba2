"""PROMPT_FILE for eval and infer: which files it names, and the prompt length they hold.

A prompt file knows its own length (a `.npy` of shape [P, d], a PEFT adapter's
num_virtual_tokens), so eval and infer take PROMPT_LENGTH from it instead of the models/ gin
default. PROMPT_FILE may also be a training run's MODEL_DIR, meaning its prompt_best.npy. A file
of a run (MODEL_DIR/prompt_best.npy, MODEL_DIR/prompts/prompt_<step>.npy or peft_<step>/) is
checked against the PROMPT_LENGTH in that run's config.gin, and an explicit
`--gin.PROMPT_LENGTH` that disagrees with the file is refused: each in one line.
"""
from __future__ import annotations

import json
import os
import re
from typing import Optional, Sequence

import numpy as np

from prompt_tuning.checkpoints import prompt_io
from prompt_tuning.checkpoints import restore
from prompt_tuning.config import gin_config
from prompt_tuning.config.errors import UsageError

RUN_CONFIG = "config.gin"
BEST = "prompt_best.npy"
_LENGTH_LINE = re.compile(r"^PROMPT_LENGTH = (\d+)\s*$", re.MULTILINE)  # as gin.config_str() writes it


def resolve(path: str) -> str:
  """`path`, or for a run's MODEL_DIR its prompt_best.npy."""
  if os.path.isdir(path) and os.path.isfile(os.path.join(path, RUN_CONFIG)):
    best = os.path.join(path, BEST)
    if not os.path.exists(best):
      raise UsageError(f"PROMPT_FILE {path} is a run folder without {BEST} (it has not evaluated yet): "
                       "give one of its prompts/prompt_<step>.npy")
    return best
  return path


def stored_length(path: str) -> int:
  """How many prompt vectors a .npy or PEFT adapter folder holds, read from its header."""
  try:
    if os.path.isdir(path):
      with open(os.path.join(path, prompt_io.ADAPTER_CONFIG)) as f:
        return int(json.load(f)["num_virtual_tokens"])
    shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
  except (OSError, ValueError, KeyError) as err:
    raise UsageError(f"cannot read prompt file {path}: {' '.join(str(err).split())}") from None
  if len(shape) not in (2, 3):
    raise UsageError(f"prompt file {path} has shape {shape}; a prompt is [length, d_model]")
  return int(shape[-2])


def run_length(path: str) -> Optional[int]:
  """PROMPT_LENGTH of the training run `path` belongs to (its config.gin), if it is a run's file."""
  folder = os.path.dirname(os.path.abspath(path))
  if os.path.basename(folder) == "prompts":
    folder = os.path.dirname(folder)
  config = os.path.join(folder, RUN_CONFIG)
  if not os.path.isfile(config):
    return None
  with open(config, encoding="utf-8") as f:
    match = _LENGTH_LINE.search(f.read())
  return int(match.group(1)) if match else None


def fit_prompt_length(model, files: Sequence[str]):
  """`model` with the prompt length of `files` (which must agree with each other, with their
  runs' config.gin and with an explicit --gin.PROMPT_LENGTH). A training checkpoint holds no
  prompt file: the model keeps its settings, and the checkpoint's arrays are checked against
  them as they are read (`restore.restore_trained`)."""
  if any(restore.is_training_checkpoint(path) for path in files):
    return model
  lengths = {path: stored_length(path) for path in files}
  if len(set(lengths.values())) > 1:
    raise UsageError(f"the prompt files hold prompts of different lengths ({lengths}): prompts "
                     "evaluated together share one prompt table, so give prompts of one length")
  length = next(iter(lengths.values()))
  for path in files:
    in_run = run_length(path)
    if in_run is not None and in_run != length:
      raise UsageError(f"prompt file {path} holds {length} prompt vectors but its run's {RUN_CONFIG} "
                       f"says PROMPT_LENGTH = {in_run}: the file was not written by that run; check the path")
  if model.prompt_length != length and gin_config.bound_by_flag("PROMPT_LENGTH"):
    raise UsageError(f"--gin.PROMPT_LENGTH={model.prompt_length} disagrees with prompt file {files[0]}, "
                     f"which holds {length} prompt vectors: drop --gin.PROMPT_LENGTH (eval and infer "
                     "take the length from the file) or give the matching file")
  return model if model.prompt_length == length else model.clone(prompt_length=length)
