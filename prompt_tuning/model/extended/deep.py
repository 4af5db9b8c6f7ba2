"""Per-layer (deep) prompts (the official code's `extended/train/per_layer.py`): a prompt for the
input of each chosen encoder layer, at the positions of the (prefix) input prompt, which is the
first layer's prompt.

`mode`: `replace` sets those positions' hidden states to the layer's prompt; `add` adds the
layer's prompt to them (learned deltas). `layers`: the encoder layers that get one (None: every
layer after the first; () switches them off). Parameter `prompt` [len(layers), P, d]; replace
prompts start from PROMPT_INIT, added ones at zero (so the model starts as the plain prompt's).
"""
from __future__ import annotations

from typing import Optional, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from prompt_tuning.config import checks
from prompt_tuning.model import t5

Array = jax.Array
MODES = ("replace", "add")


class DeepPrompt(nn.Module):
  layers: Optional[tuple[int, ...]] = None
  mode: str = "replace"

  def chosen(self, num_layers: int) -> tuple[int, ...]:
    return tuple(range(1, num_layers)) if self.layers is None else tuple(self.layers)

  @nn.compact
  def __call__(self, cfg: t5.T5Config, length: int) -> dict:
    """Encoder hooks: "prompt" [num_layers, P, d] and "prompt_keep" [num_layers] (`t5.LayerHooks`);
    {} when no layer is chosen."""
    chosen = self.chosen(cfg.num_encoder_layers)
    if not chosen:
      return {}
    prompts = self.param("prompt", nn.with_logical_partitioning(
        nn.initializers.zeros, (t5.LAYERS_AXIS, "prompt", "prompt_embed")),
        (len(chosen), length, cfg.emb_dim), jnp.float32)
    index = jnp.asarray(chosen)
    full = jnp.zeros((cfg.num_encoder_layers, length, cfg.emb_dim), jnp.float32).at[index].set(prompts)
    keep = jnp.ones((cfg.num_encoder_layers,), jnp.float32)
    if self.mode == "replace":
      keep = keep.at[index].set(0.0)
    return {"prompt": full, "prompt_keep": keep}

  def initial_params(self, rng: Array, model, embedding, initializer) -> dict:
    chosen = self.chosen(model.cfg.num_encoder_layers)
    if not chosen:
      return {}
    shape = (len(chosen), model.prompt_length, model.cfg.emb_dim)
    if self.mode == "add":
      return {"prompt": jnp.zeros(shape, jnp.float32)}
    return {"prompt": jnp.asarray(initializer(rng, shape, embedding), jnp.float32)}


def deep_prompt(layers: Optional[Sequence[int]] = None, mode: str = "replace") -> DeepPrompt:
  checks.check({"PER_LAYER_LAYERS": layers, "PER_LAYER_MODE": mode})
  return DeepPrompt(None if layers is None else tuple(int(i) for i in layers), mode)
