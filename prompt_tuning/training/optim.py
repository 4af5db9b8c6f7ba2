"""Adafactor with T5X's semantics, built from optax, and the pretrained Adafactor state of T5X.

T5X's update rule (`t5x/adafactor.py`, and the paper's prompt tuning) in optax's terms:
  v_t = d_t v_{t-1} + (1 - d_t)(g^2 + eps1),  d_t = 1 - (t - offset + 1)^-0.8
  u   = g / sqrt(v_t), clipped so that RMS(u) <= 1
  p  <- (1 - wd) p - lr u                 (weight decay not multiplied by the learning rate)
with no momentum and, for prompt tuning, no parameter scaling and an unfactored second moment.
With `factored=True` (model tuning) a matrix whose two dimensions are both at least
`min_dim_size_to_factor` keeps a row and a column statistic instead of v (v ~ outer(row, col) /
mean(row)), the smaller dimension being the rows (for equal sizes the first), vectors and
smaller matrices keep v whole: T5X's rule for parameters of rank <= 2, which is every parameter
of the unrolled model. With scanned layers (`T5Config.scan_layers`) a stacked parameter is its
layers side by side, and T5X treats the `layers` axis as a batch axis: statistics are factored
over the two other dimensions and clipping (and parameter scaling) is per layer, so a scanned
model's step equals the unrolled one's.

The step counter lives in the optimizer state. For prompt tuning it starts at 0; model tuning
restores the pretrained checkpoint's Adafactor state (`restore_t5x_state`: `v_row`, `v_col`, `v`
and the step, 1,000,000 for the T5 1.1 checkpoints), as T5X's fine-tuning does, so the decay
schedule continues from pretraining.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from prompt_tuning.checkpoints import t5x
from prompt_tuning.config import checks
from prompt_tuning.model import layer_stack

SLOTS = ("v_row", "v_col", "v")  # T5X's names for Adafactor's second-moment statistics
_PARAM_STATES = "optimizer/state/param_states"
_STEP = "optimizer/state/step"


def adafactor(learning_rate: float = 0.3, decay_rate: float = 0.8, step_offset: int = 0,
              clipping_threshold: float | None = 1.0, weight_decay_rate: float | None = 1e-5,
              epsilon1: float = 1e-30, factored: bool = False, multiply_by_parameter_scale: bool = False,
              min_dim_size_to_factor: int = 128) -> optax.GradientTransformation:
  """The paper's prompt-tuning optimizer (defaults); `factored=True` is T5X's model tuning one.

  `multiply_by_parameter_scale` multiplies each update by the parameter's RMS (at least 1e-3),
  T5X's default, which the paper turns off for prompts.
  """
  checks.check({"LEARNING_RATE": learning_rate, "adafactor.decay_rate": decay_rate,
                "adafactor.step_offset": step_offset, "adafactor.clipping_threshold": clipping_threshold,
                "adafactor.weight_decay_rate": weight_decay_rate, "adafactor.epsilon1": epsilon1,
                "adafactor.multiply_by_parameter_scale": multiply_by_parameter_scale,
                "adafactor.min_dim_size_to_factor": min_dim_size_to_factor})
  tx = [optax.scale_by_factored_rms(factored, decay_rate, step_offset, min_dim_size_to_factor, epsilon1)]
  if clipping_threshold is not None:
    tx.append(_per_block(lambda u, rms: u / jnp.maximum(1.0, rms / clipping_threshold), "updates"))
  tx.append(optax.scale_by_learning_rate(learning_rate, flip_sign=False))
  if multiply_by_parameter_scale:
    tx.append(_per_block(lambda u, rms: u * jnp.maximum(rms, 1e-3), "params"))
  if weight_decay_rate is not None:
    tx.append(optax.add_decayed_weights(weight_decay_rate))
  tx.append(optax.scale(-1))  # descent
  return optax.chain(*tx)


def _block_rms(x: jax.Array, stacked: bool) -> jax.Array:
  """RMS of a parameter's block: the whole array, or each layer of a stacked one."""
  if not stacked:
    return jnp.sqrt(jnp.mean(x * x))
  return jnp.sqrt(jnp.mean(x * x, axis=tuple(range(1, x.ndim)), keepdims=True))


def _per_block(rescale: Callable, of: str) -> optax.GradientTransformation:
  """Rescales each update by `rescale(update, RMS of the block of `of`)` (the updates, or the
  parameters), per layer for parameters stacked by scanned layers."""
  def update(updates, state, params=None):
    source = updates if of == "updates" else params

    def one(path, u, x):
      return rescale(u, _block_rms(x, layer_stack.is_stacked(_name(path))))
    return jax.tree_util.tree_map_with_path(one, updates, source), state
  return optax.GradientTransformation(optax.init_empty_state, update)


def _name(path) -> str:
  return "/".join(str(getattr(k, "key", k)) for k in path)


# ----------------------------------------------------------------------------- pretrained state


def _factored_state(opt_state: Any) -> tuple[int, optax.FactoredState]:
  for i, part in enumerate(opt_state):
    if isinstance(part, optax.FactoredState):
      return i, part
  raise ValueError("the optimizer is not Adafactor: only Adafactor's state can be restored from "
                   "a T5X checkpoint (set RESTORE_OPTIMIZER_STATE = False)")


def _stored_slots(leaves: Mapping[str, t5x.Leaf], names: list[str], stacked: bool) -> dict:
  """Module name -> {slot: leaf} from a T5X checkpoint's `param_states` (layers stacked where the
  module stacks them)."""
  root = _PARAM_STATES + "/"
  by_layer = {}
  for name, leaf in leaves.items():
    if name.startswith(root) and name.rsplit("/", 1)[-1] in SLOTS:
      param, slot = name[len(root):].rsplit("/", 1)
      by_layer.setdefault(param, {})[slot] = leaf
  if not by_layer:
    return {}
  flat = {f"{p}/{s}": leaf for p, slots in by_layer.items() for s, leaf in slots.items()}
  tree = traverse_util.unflatten_dict(flat, sep="/")
  if stacked:
    tree = layer_stack.stack_layers(tree, stack=t5x.StackedLeaf)
  flat = traverse_util.flatten_dict(tree, sep="/")
  out = {}
  for name in names:
    slots = {s: flat[f"{name}/{s}"] for s in SLOTS if f"{name}/{s}" in flat}
    if slots:
      out[name] = slots
  return out


def restore_t5x_state(opt_state: Any, path: str, shardings: Any = None) -> Any:
  """`opt_state` (of `adafactor`, for the trainable parameters) with the second moments and the
  step of the T5X checkpoint at `path` (T5X's Adafactor state, as the released checkpoints hold it).

  Parameters the checkpoint has no state for (a prompt) keep their fresh, zero statistics. A
  statistic stored with another shape than this optimizer keeps (e.g. factored there, whole
  here), a checkpoint without Adafactor state, or one without state for a backbone parameter is
  a ValueError naming it. `shardings` (the optimizer state's, from `step.state_shardings`) lays
  each statistic out as it is read.
  """
  index, state = _factored_state(opt_state)
  checkpoint = t5x.open_checkpoint(path)
  flat = {slot: traverse_util.flatten_dict(getattr(state, slot), sep="/") for slot in SLOTS}
  names = list(flat["v"])
  stacked = any(layer_stack.is_stacked(n) for n in names)
  stored = _stored_slots(checkpoint.leaves, names, stacked)
  if not stored or _STEP not in checkpoint.leaves:
    raise ValueError(f"{path} holds no Adafactor state ({_PARAM_STATES}/.../v_row, v_col, v and "
                     f"{_STEP}): it was saved without its optimizer; set RESTORE_OPTIMIZER_STATE = "
                     "False to start the optimizer from zero")
  missing = [n for n in names if n not in stored and not n.startswith("prompt/")]
  if missing:
    raise ValueError(f"{path} has no Adafactor state for {', '.join(missing[:3])}"
                     f"{f' and {len(missing) - 3} more' if len(missing) > 3 else ''}: the optimizer "
                     "state does not fit the trainable parameters; set RESTORE_OPTIMIZER_STATE = False")
  read: dict[str, dict] = {slot: {} for slot in SLOTS}
  for name, slots in stored.items():
    factored = tuple(flat["v_row"][name].shape) != (1,)  # a factored matrix has >= 128 rows
    for slot in ("v_row", "v_col") if factored else ("v",):
      want, leaf = tuple(flat[slot][name].shape), slots.get(slot)
      if leaf is None or tuple(leaf.shape) != want:
        got = None if leaf is None else tuple(leaf.shape)
        raise ValueError(f"the Adafactor state of {name} in {path} does not fit this optimizer: "
                         f"{slot} is {got} there but {want} here (the checkpoint's second moment "
                         "is factored where this one's is not, or the other way, or the model is "
                         "another size); set FACTORED to match, or RESTORE_OPTIMIZER_STATE = False")
      read[slot][name] = leaf
  step = int(np.asarray(checkpoint.leaves[_STEP].value()))
  logging.info("restored the Adafactor state of %d parameters at step %d from %s", len(stored), step, path)
  slot_shardings = None if shardings is None else shardings[index]
  new = {}
  for slot, leaves in read.items():
    where = None if slot_shardings is None else traverse_util.unflatten_dict(
        {n: sh for n, sh in traverse_util.flatten_dict(getattr(slot_shardings, slot), sep="/").items()
         if n in leaves}, sep="/")
    values = traverse_util.flatten_dict(t5x.materialize(leaves, where, "float32"), sep="/")
    new[slot] = traverse_util.unflatten_dict({**flat[slot], **values}, sep="/")
  count = jnp.asarray(step, jnp.int32)
  if slot_shardings is not None:
    count = jax.device_put(count, slot_shardings.count)
  restored = state._replace(count=count, **new)
  return tuple(restored if i == index else part for i, part in enumerate(opt_state))
