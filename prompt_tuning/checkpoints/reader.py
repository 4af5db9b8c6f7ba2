"""Any checkpoint the tools inspect, as one `t5x.Checkpoint` of named arrays.

  * T5X checkpoints in every layout (msgpack, TensorStore, Orbax / OCDBT), local or gs://;
  * this project's training checkpoints: `MODEL_DIR/checkpoint_<step>` (or its `state/`), or a
    MODEL_DIR, meaning its newest complete checkpoint; the parameters are the trainable ones
    (`prompt/prompt` for prompt tuning);
  * Hugging Face T5 1.1 folders, under T5X names (`token_embedder/embedding`, ...), so that a
    converted checkpoint compares name by name with its source.
"""
from __future__ import annotations

import os
import re

from prompt_tuning.checkpoints import hf
from prompt_tuning.checkpoints import state
from prompt_tuning.checkpoints import t5x

_STEP_DIR = re.compile(r"^checkpoint_(\d+)$")


def _training_checkpoint(path: str) -> str:
  """`path`, or for a MODEL_DIR its newest complete checkpoint; an incomplete
  `checkpoint_<step>` of a run (no valid metadata.json: a write that never finished) is refused."""
  folder = os.path.abspath(path)
  if os.path.isdir(folder) and not os.path.exists(os.path.join(folder, "checkpoint")):
    steps = state.checkpoint_steps(folder)
    if steps and not os.path.exists(os.path.join(folder, "state")):
      complete = [s for s in steps if state.read_metadata(folder, s) is not None]
      if not complete:
        raise FileNotFoundError(f"{path} has checkpoint folders but no complete one (metadata.json "
                                "is written last): the run has not saved a checkpoint yet")
      return os.path.join(folder, f"checkpoint_{complete[-1]}")
  step_dir = folder if _STEP_DIR.match(os.path.basename(folder)) else os.path.dirname(folder)
  match = _STEP_DIR.match(os.path.basename(step_dir))
  if match and os.path.isdir(os.path.join(step_dir, "state")):
    if state.read_metadata(os.path.dirname(step_dir), int(match.group(1))) is None:
      raise ValueError(f"{step_dir} is incomplete (no valid {state.METADATA}): a checkpoint write "
                       "that never finished; use another step")
  return path


def open_any(path: str) -> t5x.Checkpoint:
  """The arrays of a T5X, training or Hugging Face checkpoint (only small index files are read)."""
  if hf.is_hf_checkpoint(path):
    leaves, _ = hf.open_hf_t5(path)
    return t5x.Checkpoint(path, "huggingface", dict(sorted(leaves.items())), root="")
  if not path.startswith("gs://"):
    path = _training_checkpoint(path)
  return t5x.open_checkpoint(path)
