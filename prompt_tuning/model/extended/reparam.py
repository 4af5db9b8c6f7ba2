"""Reparameterized prompts: the prompt is computed by a small network that training alone needs.

  mlp       prompt = MLP(theta)               as P-tuning / prefix tuning reparameterize
  residual  prompt = P + LayerNorm(MLP(P))    Residual Prompt Tuning (Razdaibiedina et al. 2023)
MLP(x) = W2 act(W1 x + b1) + b2, two layers with `hidden` units (default d_model). `theta` (or P)
is [P, d] and starts from PROMPT_INIT. Once trained, only the effective prompt matters: training
exports it (`prompts/prompt_<step>.npy`, `prompt_best.npy`), so evaluation and serving load it
into the plain model and never run the MLP.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from prompt_tuning.config import checks

Array = jax.Array
FORMS = ("mlp", "residual")
ACTIVATIONS = ("tanh", "relu", "gelu")
_IN, _OUT = ("prompt_embed", "prompt_hidden"), ("prompt_hidden", "prompt_embed")  # kernel axes


class ReparameterizedPrompt(nn.Module):
  """Parameters `theta` [P, d], `hidden` and `output` (Dense), and for `residual` `layer_norm`."""
  form: str = "mlp"
  hidden: int = 0  # 0: d_model
  activation: str = "tanh"

  @nn.compact
  def __call__(self, length: int, features: int) -> Array:
    """The effective prompt [length, features], float32."""
    theta = self.param("theta", nn.with_logical_partitioning(nn.initializers.zeros, ("prompt", "prompt_embed")),
                       (length, features), jnp.float32)
    def dense(n, name, axes):
      return nn.Dense(n, name=name, param_dtype=jnp.float32,
                      kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), axes),
                      bias_init=nn.with_logical_partitioning(nn.initializers.zeros, axes[1:]))
    h = getattr(jax.nn, self.activation)(dense(self.hidden or features, "hidden", _IN)(theta))
    out = dense(features, "output", _OUT)(h)
    if self.form == "mlp":
      return out
    norm = nn.LayerNorm(name="layer_norm", param_dtype=jnp.float32,
                        scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("prompt_embed",)),
                        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("prompt_embed",)))
    return theta + norm(out)

  def initial_params(self, rng: Array, model, embedding, initializer) -> dict:
    """Random MLP weights and `theta` from the prompt initializer (with the frozen embedding)."""
    length, features = model.prompt_length, model.cfg.emb_dim
    init_rng, theta_rng = jax.random.split(rng)
    params = nn.meta.unbox(self.init(init_rng, length, features)["params"])
    params["theta"] = jnp.asarray(initializer(theta_rng, (length, features), embedding), jnp.float32)
    return params


def reparameterized_prompt(form: str = "mlp", hidden: int = 0, activation: str = "tanh") -> ReparameterizedPrompt:
  checks.check({"REPARAM_FORM": form, "REPARAM_HIDDEN": hidden, "REPARAM_ACTIVATION": activation})
  return ReparameterizedPrompt(form, int(hidden), activation)
