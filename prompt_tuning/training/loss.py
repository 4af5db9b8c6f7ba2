"""T5X's training loss: token cross-entropy plus z-loss, summed over the weighted target tokens."""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

Array = jax.Array


def cross_entropy_loss(logits: Array, targets: Array, weights: Optional[Array] = None,
                       z_loss: float = 1e-4, loss_normalizing_factor: Optional[float] = None):
  """T5X's loss: token cross-entropy + z_loss * logsumexp^2, summed over weighted tokens.

  Returns (loss, stats); with `loss_normalizing_factor=None` the loss is the sum over tokens
  (T5X's default). Padding (target id 0) gets weight 0 unless weights are given.
  """
  if weights is None:
    weights = (targets > 0).astype(jnp.float32)
  logits = logits.astype(jnp.float32)
  lse = jax.nn.logsumexp(logits, axis=-1)
  target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  token_ce = lse - target_logit
  token_z = z_loss * jnp.square(lse)
  total = jnp.sum((token_ce + token_z) * weights)
  if loss_normalizing_factor is not None:
    total = total / loss_normalizing_factor
  n_tokens = jnp.sum(weights)
  correct = (jnp.argmax(logits, -1) == targets).astype(jnp.float32) * weights
  stats = {"loss": total, "cross_ent_per_token": jnp.sum(token_ce * weights) / jnp.maximum(n_tokens, 1),
           "z_loss": jnp.sum(token_z * weights), "accuracy": jnp.sum(correct) / jnp.maximum(n_tokens, 1),
           "num_tokens": n_tokens}
  return total, stats
