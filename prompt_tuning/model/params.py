"""Parameter trees of a PromptT5 without allocating them, their shardings, and random weights.

Restoring a checkpoint, building the train step and benchmarking all need the shapes and
logical axes of every parameter before any array exists; `jax.eval_shape` gives them for free.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import jax
from flax import linen as nn
from flax import traverse_util

from prompt_tuning.model import prompted
from prompt_tuning.parallel import partitioning

Array = jax.Array


def abstract_params(module: prompted.PromptT5) -> Any:
  """Shapes and logical axes of every parameter, without allocating any."""
  return jax.eval_shape(lambda: prompted.init_params(module, jax.random.PRNGKey(0)))


def names(module: prompted.PromptT5) -> list[str]:
  """The '/'-joined name of every parameter (what TRAINABLE patterns match)."""
  return list(traverse_util.flatten_dict(nn.meta.unbox(abstract_params(module)), sep="/"))


def shardings(module: prompted.PromptT5, mesh, rules,
              trainable: Sequence[str] = prompted.DEFAULT_TRAINABLE) -> tuple[Any, Any]:
  """(trainable shardings, frozen shardings) on `mesh` for the module's parameters."""
  specs = partitioning.logical_specs(abstract_params(module))
  named = partitioning.mesh_shardings(specs, mesh, rules)
  return prompted.split(named, trainable)


def init_random_frozen(module: prompted.PromptT5, rng: Array, mesh, rules,
                       dtype: Optional[str] = None, trainable: Sequence[str] = ()) -> Any:
  """Random backbone weights (all but the prompt and the methods' parameters), created directly in
  their sharded layout; matrices in `dtype` except those matched by `trainable` (float32)."""
  _, frozen_shardings = shardings(module, mesh, rules, prompted.OUTSIDE_BACKBONE)

  def init():
    params = nn.meta.unbox(prompted.init_params(module, rng))
    frozen = prompted.split(params, prompted.OUTSIDE_BACKBONE)[1]
    return prompted.cast_frozen(frozen, dtype, trainable) if dtype else frozen

  with partitioning.activation_context(mesh, rules):
    return jax.jit(init, out_shardings=frozen_shardings)()
