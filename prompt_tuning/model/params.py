"""Parameter trees of a PromptT5 without allocating them, their shardings, and random weights.

Restoring a checkpoint, building the train step and benchmarking all need the shapes and
logical axes of every parameter before any array exists; `jax.eval_shape` gives them for free.
"""
from __future__ import annotations

from typing import Any, Optional

import jax
from flax import linen as nn

from prompt_tuning.model import prompted
from prompt_tuning.parallel import partitioning

Array = jax.Array


def abstract_params(module: prompted.PromptT5) -> Any:
  """Shapes and logical axes of every parameter, without allocating any."""
  return jax.eval_shape(lambda: prompted.init_params(module, jax.random.PRNGKey(0)))


def shardings(module: prompted.PromptT5, mesh, rules) -> tuple[Any, Any]:
  """(prompt shardings, frozen shardings) on `mesh` for the module's parameters."""
  specs = partitioning.logical_specs(abstract_params(module))
  named = partitioning.mesh_shardings(specs, mesh, rules)
  return prompted.split(named)


def init_random_frozen(module: prompted.PromptT5, rng: Array, mesh, rules,
                       dtype: Optional[str] = None) -> Any:
  """Randomly initialized frozen weights, created directly in their sharded layout."""
  _, frozen_shardings = shardings(module, mesh, rules)

  def init():
    params = nn.meta.unbox(prompted.init_params(module, rng))
    frozen = prompted.split(params)[1]
    return prompted.cast_frozen(frozen, dtype) if dtype else frozen

  with partitioning.activation_context(mesh, rules):
    return jax.jit(init, out_shardings=frozen_shardings)()
