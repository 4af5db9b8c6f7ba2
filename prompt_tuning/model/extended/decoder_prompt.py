"""A prompt on the decoder as well: P_d vectors prepended to the embedded decoder inputs, so every
target position also attends to them (the official code lists prompting both sides as not
implemented). Teacher forcing prepends them and drops their outputs; cached decoding (greedy,
beam search, sampling) starts from a cache prefilled with them, so the outputs never include
them. Parameter `prompt` [P_d, d], from PROMPT_INIT; length 0 is the plain model.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from prompt_tuning.config import checks

Array = jax.Array


class DecoderPrompt(nn.Module):
  length: int = 0

  @nn.compact
  def __call__(self, features: int) -> Array:
    """The decoder prompt [P_d, features], float32."""
    return self.param("prompt", nn.with_logical_partitioning(nn.initializers.zeros, ("prompt", "prompt_embed")),
                      (self.length, features), jnp.float32)

  def initial_params(self, rng: Array, model, embedding, initializer) -> dict:
    if self.length == 0:
      return {}
    shape = (self.length, model.cfg.emb_dim)
    return {"prompt": jnp.asarray(initializer(rng, shape, embedding), jnp.float32)}


def decoder_prompt(length: int = 10) -> DecoderPrompt:
  checks.check({"DECODER_PROMPT_LENGTH": length})
  return DecoderPrompt(int(length))
