"""Wayward prompts (Khashabi et al. 2022, the official code's `extended/train/wayward.py`): the
loss gains gamma * ||P - E||^2 / P, the squared L2 distance of the prompt P [P, d] from E, the
embedding of a task description's tokens (one token per prompt position), divided by the prompt
length, so the prompt stays near (its nearest-neighbour projection near) the words."""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def squared_distance(prompt: Array, target: Array) -> Array:
  """||prompt - target||^2 / length for [length, d] arrays."""
  return jnp.sum(jnp.square(prompt - target)) / prompt.shape[0]


def regularizer(target: np.ndarray, gamma: float = 0.01) -> Callable[[Any], Array]:
  """trainable parameters -> gamma * squared_distance(prompt/prompt, target)."""
  target = jnp.asarray(target, jnp.float32)

  def penalty(trainable):
    return gamma * squared_distance(trainable["prompt"]["prompt"].astype(jnp.float32), target)
  return penalty
