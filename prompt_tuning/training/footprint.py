"""What one device holds for a train step: frozen weights, trainable weights, their gradients and
their optimizer state, in bytes, from shapes and shardings alone.

Nothing is allocated (`jax.eval_shape`), so the numbers come for any size and mesh on a CPU; the
benchmark prints them (`bench --memory-only`) and the train loop refuses, before reading any
weight, a mesh whose devices could not hold them. Activations are not counted here (they depend
on the batch; `bench --memory-only` reads them from the step's jaxpr).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import jax
import numpy as np
import optax
from flax import linen as nn

from prompt_tuning.model import params as params_lib
from prompt_tuning.model import prompted as model_lib
from prompt_tuning.training import step as train_step

PARTS = ("frozen_weights", "trainable_weights", "gradients", "optimizer_state")


def per_device_bytes(shapes: Any, shardings: Any) -> int:
  """Bytes of the largest shard set one device holds of `shapes` laid out as `shardings`."""
  total = 0
  for shape, sharding in zip(jax.tree.leaves(shapes), jax.tree.leaves(shardings)):
    local = sharding.shard_shape(tuple(shape.shape))
    total += int(np.prod(local, dtype=np.int64)) * np.dtype(shape.dtype).itemsize
  return total


def step_bytes(module: model_lib.PromptT5, tx: optax.GradientTransformation, mesh, rules,
               trainable: Sequence[str] = model_lib.DEFAULT_TRAINABLE,
               frozen_dtype: Optional[str] = "float32") -> dict[str, int]:
  """{part: bytes per device} of a train step's state, for each of PARTS. Trainable weights and
  their gradients are float32; frozen matrices are stored in `frozen_dtype`."""
  params = nn.meta.unbox(params_lib.abstract_params(module))
  trained, frozen = model_lib.split(params, trainable)
  if frozen_dtype:
    frozen = jax.eval_shape(lambda f: model_lib.cast_frozen(f, frozen_dtype), frozen)
  trained_sh, frozen_sh = params_lib.shardings(module, mesh, rules, trainable)
  state = jax.eval_shape(lambda p: train_step.TrainState.create(p, tx), trained)
  state_sh = train_step.state_shardings(state, mesh, trained_sh)
  weights = per_device_bytes(trained, trained_sh)
  return {"frozen_weights": per_device_bytes(frozen, frozen_sh), "trainable_weights": weights,
          "gradients": weights, "optimizer_state": per_device_bytes(state.opt_state, state_sh.opt_state)}


def device_memory_bytes() -> Optional[int]:
  """This host's first device's memory as its backend reports it (None on a CPU)."""
  stats = jax.local_devices()[0].memory_stats() or {}  # another host's device has no stats here
  return stats.get("bytes_limit")


def check_fits(need: dict[str, int], limit: Optional[int]) -> None:
  """A ValueError when the parts of `need` together exceed `limit` bytes (no check without one)."""
  total = sum(need.values())
  if limit and total > limit:
    parts = ", ".join(f"{k.replace('_', ' ')} {v / 2 ** 30:.1f}" for k, v in need.items() if v)
    raise ValueError(f"each device would hold {total / 2 ** 30:.1f} GiB of weights and train state "
                     f"({parts} GiB) before any activation, but has {limit / 2 ** 30:.1f} GiB")
