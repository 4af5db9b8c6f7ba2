"""Training checkpoints that hold only what tuning changes, written atomically.

A checkpoint is `MODEL_DIR/checkpoint_{step}/` with
  state/          Orbax: the TrainState (step, trainable parameters, optimizer state) and the RNG
                  key data;
  metadata.json   step, data-iterator position, metrics, the frozen checkpoint it depends on and
                  the TRAINABLE patterns.
The frozen parameters are never written: resuming reads them again from `frozen_checkpoint`.
Whatever trains (a prompt, a few layers, every weight), the same code saves and restores it.

Each save is assembled in a hidden temporary folder and renamed into place, with metadata.json
written last, so a run killed at any moment leaves either a whole checkpoint or a leftover that
restore skips with a warning, falling back to the previous checkpoint. When a prompt trains, every
save also exports it as `MODEL_DIR/prompts/prompt_{step}.npy` (and, on request, a PEFT adapter
folder).

In a multi-host job every host calls `save` and `restore` on the same (shared) MODEL_DIR; the
primary host alone creates, renames and deletes folders, the others waiting at barriers.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import shutil
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import serialization
from flax import traverse_util

from prompt_tuning.checkpoints import finite
from prompt_tuning.checkpoints import prompt_io
from prompt_tuning.checkpoints import t5x
from prompt_tuning.config.errors import ConfigError
from prompt_tuning.parallel import multihost

FORMAT = "prompt_tuning.train_checkpoint/2"
# Format 1 named the trainable subtree `prompt` (it could only be the prompt); it still restores.
_FORMAT_1 = "prompt_tuning.train_checkpoint/1"
METADATA = "metadata.json"
_STEP_DIR = re.compile(r"^checkpoint_(\d+)$")
_TMP_PREFIX = ".tmp-checkpoint_"
_FORMAT_1_NAME = re.compile(r"^train_state/prompt/")


class CheckpointError(ValueError):
  """A training checkpoint that cannot be restored as saved (the message names what and where)."""


@dataclasses.dataclass
class Restored:
  state: Any  # the TrainState, laid out like the abstract state given to restore
  data_state: dict  # the data iterator's position, as saved
  rng: Optional[jax.Array]  # the RNG key data saved with the state (None if none was saved)
  metadata: dict
  step: int


class TrainCheckpointer:
  """Saves and restores the trainable state of one run in `model_dir` (a local folder).

  keep: how many checkpoints to keep (None: all). With `keep_best_metric`, the `keep` best by
  that metric (`mode` "max" or "min") are kept, plus always the latest, which resuming needs.
  frozen_checkpoint: path of the backbone this run tunes on, recorded in every checkpoint.
  trainable: the run's TRAINABLE patterns, recorded in every checkpoint (a later run whose state
  does not fit is told which patterns it was saved with).
  peft_export: if given, `prompt_io.save_peft` keyword arguments (num_layers,
  num_attention_heads, ...): each save also writes `prompts/peft_{step}/`.
  scan_layers: the model's layer layout (`T5Config.scan_layers`), recorded in every checkpoint;
  restoring one saved with the other layout is refused, since a state that holds layer
  parameters (or their optimizer statistics) is shaped by it.
  prompt_of: trainable parameters -> the prompt `prompts/prompt_{step}.npy` holds, or None for
  none (default: the plain prompt subtree; a method that computes the prompt exports the prompt
  it computes).
  """

  def __init__(self, model_dir: str, *, keep: Optional[int] = 3, keep_best_metric: Optional[str] = None,
               mode: str = "max", frozen_checkpoint: Optional[str] = None,
               peft_export: Optional[Mapping[str, Any]] = None, scan_layers: bool = False,
               trainable: Optional[Sequence[str]] = None,
               prompt_of: Optional[Callable[[Any], Any]] = None):
    if mode not in ("max", "min"):
      raise ValueError(f"mode must be 'max' or 'min', not {mode!r}")
    if keep is not None and keep < 1:
      raise ValueError(f"keep must be >= 1 (or None to keep all), not {keep}")
    self.model_dir = os.path.abspath(model_dir)
    self.keep, self.metric, self.mode = keep, keep_best_metric, mode
    self.frozen_checkpoint = frozen_checkpoint
    self.trainable = list(trainable) if trainable is not None else None
    self.peft_export = dict(peft_export) if peft_export else None
    self.scan_layers = bool(scan_layers)
    self.prompt_of = prompt_of or _plain_prompt
    if multihost.is_primary():
      os.makedirs(self.model_dir, exist_ok=True)
      self._remove_leftovers()
    multihost.barrier("checkpointer_init")
    self._checkpointer = ocp.Checkpointer(ocp.StandardCheckpointHandler())

  # --------------------------------------------------------------------------- paths

  def path(self, step: int) -> str:
    return os.path.join(self.model_dir, f"checkpoint_{step}")

  def prompt_path(self, step: int) -> str:
    return os.path.join(self.model_dir, "prompts", f"prompt_{step}.npy")

  def _remove_leftovers(self) -> None:
    for name in os.listdir(self.model_dir):
      if name.startswith(_TMP_PREFIX):
        logging.warning("removing %s: a checkpoint write that never finished", name)
        shutil.rmtree(os.path.join(self.model_dir, name), ignore_errors=True)

  def _folders(self) -> list[int]:
    return checkpoint_steps(self.model_dir)

  def _metadata(self, step: int) -> Optional[dict]:
    return read_metadata(self.model_dir, step)

  def steps(self) -> list[int]:
    """Steps of complete checkpoints (those with valid metadata), ascending."""
    return [s for s in self._folders() if self._metadata(s) is not None]

  def latest_step(self) -> Optional[int]:
    steps = self.steps()
    return steps[-1] if steps else None

  def best_step(self) -> Optional[int]:
    ranked = self._ranked()
    return ranked[0] if ranked else None

  def _ranked(self) -> list[int]:
    return ranked_steps(self.model_dir, self.metric, self.mode)

  # --------------------------------------------------------------------------- save

  def save(self, step: int, state: Any, data_state: Optional[Mapping[str, Any]] = None,
           metrics: Optional[Mapping[str, float]] = None, rng: Optional[jax.Array] = None) -> str:
    """Writes checkpoint `step`; `data_state` must be JSON-serializable (e.g. {"position": n}).

    A state holding NaN or infinite values is refused (NonFiniteError) before anything is written.
    A write that fails (OSError: a full disk, a folder turned read-only) leaves the earlier
    checkpoints as they were and removes what it had written of this one.
    """
    try:
      return self._save(int(step), state, data_state, metrics, rng)
    except OSError:
      if multihost.is_primary():
        shutil.rmtree(os.path.join(self.model_dir, f"{_TMP_PREFIX}{int(step)}"), ignore_errors=True)
      raise

  def _save(self, step, state, data_state, metrics, rng) -> str:
    finite.refuse_nonfinite(state, f"checkpoint_{step} not saved")
    tmp = os.path.join(self.model_dir, f"{_TMP_PREFIX}{step}")
    if multihost.is_primary():
      shutil.rmtree(tmp, ignore_errors=True)
      os.makedirs(tmp)
    multihost.barrier(f"checkpoint_{step}_start")
    tree = {"train_state": serialization.to_state_dict(state)}
    if rng is not None:
      tree["rng"] = _key_data(rng)
    rng_shape = list(tree["rng"].shape) if rng is not None else None
    self._checkpointer.save(os.path.join(tmp, "state"), args=ocp.args.StandardSave(tree))
    exported = self.prompt_of(state.params if hasattr(state, "params") else state["params"])
    prompt = None if exported is None else prompt_io._as_prompt(exported)
    final = self.path(step)
    if multihost.is_primary():
      meta = {"format": FORMAT, "step": step, "frozen_checkpoint": self.frozen_checkpoint,
              "trainable": self.trainable, "data_state": dict(data_state or {}),
              "metrics": {k: float(v) for k, v in (metrics or {}).items()},
              "rng_shape": rng_shape, "prompt_shape": None if prompt is None else list(prompt.shape),
              "scan_layers": self.scan_layers, "time": time.time()}
      with open(os.path.join(tmp, METADATA), "w") as f:  # last: its presence marks completeness
        json.dump(strict_json(meta), f, indent=1, allow_nan=False)
        f.flush()
        os.fsync(f.fileno())
      if os.path.exists(final):  # re-saving a step (e.g. after a resume): swap the old one out
        self._discard(step)
      os.rename(tmp, final)
      if prompt is not None:
        prompt_io.save_npy(self.prompt_path(step), prompt)
      if prompt is not None and self.peft_export:
        prompt_io.save_peft(os.path.join(self.model_dir, "prompts", f"peft_{step}"), prompt,
                            **self.peft_export)
      self._garbage_collect()
    multihost.barrier(f"checkpoint_{step}_done")
    return final

  def _garbage_collect(self) -> None:
    if self.keep is None:
      return
    steps = self.steps()
    keep = set(self._ranked()[: self.keep]) if self.metric else set(steps[-self.keep:])
    keep.add(steps[-1])
    for step in steps:
      if step not in keep:
        self._discard(step)

  def _discard(self, step: int) -> None:
    """Deletes checkpoint `step`, first renamed to a leftover name in one atomic step: a run
    killed while deleting leaves a leftover (removed at the next start), never a checkpoint
    with some of its files gone."""
    doomed = os.path.join(self.model_dir, f"{_TMP_PREFIX}{step}-deleted")
    shutil.rmtree(doomed, ignore_errors=True)
    os.rename(self.path(step), doomed)
    shutil.rmtree(doomed, ignore_errors=True)

  # --------------------------------------------------------------------------- restore

  def restore(self, step: int, abstract_state: Any) -> Restored:
    """Checkpoint `step`, laid out (shapes, dtypes, shardings) like `abstract_state`.

    Every array is read back verified: one that is missing, extra, of another shape or dtype
    than the state's, damaged (a missing or truncated chunk) or not finite is a CheckpointError
    naming it.
    """
    where = self.path(step)
    meta = self._metadata(step)
    if meta is None:
      raise CheckpointError(f"{where} is not a complete checkpoint (no valid {METADATA})")
    self._check_layout(step, meta)
    target = traverse_util.flatten_dict({"train_state": serialization.to_state_dict(abstract_state)},
                                        sep="/", keep_empty_nodes=True)
    if meta.get("rng_shape") is not None:
      target["rng"] = jax.ShapeDtypeStruct(tuple(meta["rng_shape"]), np.uint32)
    arrays = {n: _abstract(x) for n, x in target.items() if x is not traverse_util.empty_node and x is not None}
    try:
      leaves = t5x.open_checkpoint(os.path.join(where, "state")).leaves
      if meta["format"] == _FORMAT_1:
        leaves = {_FORMAT_1_NAME.sub("train_state/params/", n): leaf for n, leaf in leaves.items()}
      _check_arrays(leaves, arrays, meta.get("trainable"))
      values = t5x.materialize({n: leaves[n] for n in arrays}, {n: a.sharding for n, a in arrays.items()})
      values = traverse_util.flatten_dict(values, sep="/")
      state = serialization.from_state_dict(abstract_state, traverse_util.unflatten_dict(
          {n: values.get(n, x) for n, x in target.items() if n != "rng"}, sep="/")["train_state"])
      bad = finite.nonfinite(state)
      if bad:
        raise finite.NonFiniteError(f"{', '.join(bad[:3])} hold NaN or infinite values")
    except (ValueError, OSError) as err:
      raise CheckpointError(f"{where} does not restore: {' '.join(str(err).split())}; delete that folder "
                            "to resume from the checkpoint before it, or start a new MODEL_DIR") from None
    if self.frozen_checkpoint and meta.get("frozen_checkpoint") not in (None, self.frozen_checkpoint):
      logging.warning("checkpoint %d was trained on frozen checkpoint %s, but this run uses %s",
                      step, meta["frozen_checkpoint"], self.frozen_checkpoint)
    return Restored(state, meta.get("data_state", {}), values.get("rng"), meta, step)

  def _check_layout(self, step: int, meta: dict) -> None:
    saved = bool(meta.get("scan_layers", False))  # checkpoints before scanned layers: unrolled
    if saved != self.scan_layers:
      raise ConfigError(
          f"{self.path(step)} was saved with SCAN_LAYERS = {saved} but this run has SCAN_LAYERS = "
          f"{self.scan_layers}: set SCAN_LAYERS = {saved} to resume it, or start a new MODEL_DIR "
          f"(its prompt, {self.prompt_path(step)}, works with either layout as a PROMPT_FILE)")

  def restore_latest(self, abstract_state: Any) -> Optional[Restored]:
    """The newest complete checkpoint. Incomplete ones (no valid metadata.json: a run killed
    while writing) are skipped with a warning; a complete one that does not restore is an error
    (CheckpointError), never a silent fallback to an older state."""
    for step in reversed(self._folders()):
      if self._metadata(step) is None:
        logging.warning("skipping %s: incomplete checkpoint (no valid %s)", self.path(step), METADATA)
        continue
      return self.restore(step, abstract_state)
    return None


def _check_arrays(leaves: Mapping[str, Any], arrays: Mapping[str, jax.ShapeDtypeStruct],
                  trainable: Optional[Sequence[str]] = None) -> None:
  """The stored arrays are exactly the state's, each with its shape and dtype."""
  missing, extra = sorted(set(arrays) - set(leaves)), sorted(set(leaves) - set(arrays))
  if missing or extra:
    parts = ([f"it lacks {', '.join(missing[:3])}"] if missing else []) + (
        [f"it holds {', '.join(extra[:3])} that this run's state has not"] if extra else [])
    saved_with = f" It was saved with TRAINABLE = {trainable}." if trainable is not None else ""
    raise ValueError(f"{'; '.join(parts)} (was the trainable set or the optimizer changed?{saved_with})")
  for name, want in arrays.items():
    leaf = leaves[name]
    if tuple(leaf.shape) != tuple(want.shape) or np.dtype(leaf.dtype) != np.dtype(want.dtype):
      raise ValueError(f"array {name!r} is stored as {np.dtype(leaf.dtype)}{list(leaf.shape)} but this "
                       f"run's state has {np.dtype(want.dtype)}{list(want.shape)}")


def ranked_steps(model_dir: str, metric: str, mode: str = "max") -> list[int]:
  """Steps of the complete checkpoints that hold `metric`, best first (ties: the earlier step
  first, as early stopping keeps the first evaluation that reached the best value)."""
  scored = []
  for step in checkpoint_steps(model_dir):
    metrics = (read_metadata(model_dir, step) or {}).get("metrics") or {}
    if metric in metrics:  # evaluated; a NaN score (written as null) ranks below any number
      value = metrics[metric]
      value = float(value) if value is not None else math.nan
      key = math.inf if math.isnan(value) else -value if mode == "max" else value
      scored.append((key, step))
  return [s for _, s in sorted(scored)]


def checkpoint_steps(model_dir: str) -> list[int]:
  """Steps of the checkpoint_<step> folders in model_dir, complete or not, ascending."""
  return sorted(int(m.group(1)) for m in map(_STEP_DIR.match, os.listdir(model_dir)) if m)


def read_metadata(model_dir: str, step: int) -> Optional[dict]:
  """metadata.json of checkpoint `step` if that checkpoint is complete, else None; reads only,
  so it can look at a run another process is writing (sweep launchers do)."""
  try:
    with open(os.path.join(model_dir, f"checkpoint_{step}", METADATA)) as f:
      meta = json.load(f)
    return meta if meta.get("format") in (FORMAT, _FORMAT_1) and meta.get("step") == step else None
  except (OSError, ValueError):
    return None


def strict_json(value: Any) -> Any:
  """`value` with every non-finite float replaced by None (JSON has no NaN or infinity), so
  metadata files stay strict JSON that any reader parses."""
  if isinstance(value, dict):
    return {k: strict_json(v) for k, v in value.items()}
  if isinstance(value, (list, tuple, np.ndarray)):
    return [strict_json(v) for v in value]
  if isinstance(value, (float, np.floating)):
    return float(value) if math.isfinite(value) else None
  return value


def _abstract(x: Any) -> Any:
  x = np.asarray(x) if not hasattr(x, "shape") else x
  return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None))


def _key_data(rng: jax.Array) -> np.ndarray:
  if jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key):
    rng = jax.random.key_data(rng)
  return np.asarray(multihost.fetch(rng), np.uint32)



def _plain_prompt(params: Any) -> Optional[Any]:
  """The prompt subtree when the trainable parameters hold one, else None (e.g. model tuning)."""
  return params if "prompt" in params else None
