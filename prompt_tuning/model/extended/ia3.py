"""IA3 (Liu et al. 2022, the official code's `extended/train/ia3.py`): learned vectors that scale
the attention keys and values and the MLP's hidden activations of every layer.

Parameters, each [num_layers, features] and initialized to ones (so the model starts as the
frozen one, exactly): `encoder_key`, `encoder_value` [heads * head_dim], `encoder_mlp` [mlp_dim],
and the decoder's `decoder_self_key`, `decoder_self_value`, `decoder_cross_key`,
`decoder_cross_value`, `decoder_mlp`. They reach the layers as `t5.LayerHooks` (row i for layer i,
scanned or not); the cross-attention keys and values are scaled before the decoding cache holds them.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from prompt_tuning.model import t5

Array = jax.Array
ENCODER = {"key": "key_scale", "value": "value_scale", "mlp": "mlp_scale"}
DECODER = {"self_key": "self_key_scale", "self_value": "self_value_scale", "cross_key": "cross_key_scale",
           "cross_value": "cross_value_scale", "mlp": "mlp_scale"}


class IA3(nn.Module):
  """The scaling vectors of both stacks."""

  @nn.compact
  def __call__(self, cfg: t5.T5Config) -> tuple[dict, dict]:
    """(encoder hooks, decoder hooks), each name -> [num_layers, features]."""
    inner = cfg.num_heads * cfg.head_dim

    def vectors(stack: str, names: dict, layers: int) -> dict:
      out = {}
      for name, hook in names.items():
        features, axis = (cfg.mlp_dim, "mlp") if name == "mlp" else (inner, "joined_kv")
        out[hook] = self.param(f"{stack}_{name}", nn.with_logical_partitioning(
            nn.initializers.ones, (t5.LAYERS_AXIS, axis)), (layers, features), jnp.float32)
      return out
    return (vectors("encoder", ENCODER, cfg.num_encoder_layers),
            vectors("decoder", DECODER, cfg.num_decoder_layers))

  def initial_params(self, rng: Array, model, embedding, initializer) -> dict:
    """Every vector at ones (the prompt initializer is for prompts; it is not used)."""
    return nn.meta.unbox(self.init(rng, model.cfg)["params"])


def ia3() -> IA3:
  return IA3()
