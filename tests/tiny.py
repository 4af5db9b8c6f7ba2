"""Tiny configs and batches shared by the tests."""
import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from prompt_tuning.model import prompted as model_lib
from prompt_tuning.model import t5


def tiny_config(**overrides) -> t5.T5Config:
  base = dict(vocab_size=128, emb_dim=16, num_heads=2, head_dim=4, mlp_dim=32, num_encoder_layers=2,
              num_decoder_layers=2, relative_attention_num_buckets=8,
              relative_attention_max_distance=16, dtype="float32", dropout_rate=0.0)
  return t5.T5Config(**{**base, **overrides})


def _module_key(module):
  """What tells two PromptT5s apart (equal keys: the same programs)."""
  return (module.cfg, module.prompt_length, module.placement, module.num_prompts,
          repr(model_lib.methods(module)))


_INIT_CACHE = {}


def random_params(module, seed=0):
  """Random parameters (unboxed), initialized by one program per kind of module."""
  key = _module_key(module)
  if key not in _INIT_CACHE:
    _INIT_CACHE[key] = jax.jit(lambda rng: nn.meta.unbox(model_lib.init_params(module, rng)))
  return _INIT_CACHE[key](jax.random.PRNGKey(seed))


def random_batch(batch=4, inputs_len=9, targets_len=5, vocab=128, seed=0):
  """Right-padded inputs/targets of varying lengths (every row keeps >= 2 real tokens)."""
  rng = np.random.RandomState(seed)
  inputs = rng.randint(1, vocab, (batch, inputs_len))
  targets = rng.randint(1, vocab, (batch, targets_len))
  for i in range(batch):
    inputs[i, rng.randint(2, inputs_len + 1):] = 0
    targets[i, rng.randint(2, targets_len + 1):] = 0
  dec_in = np.pad(targets[:, :-1], ((0, 0), (1, 0)))
  return {"encoder_input_tokens": jnp.asarray(inputs, jnp.int32),
          "decoder_input_tokens": jnp.asarray(dec_in, jnp.int32),
          "decoder_target_tokens": jnp.asarray(targets, jnp.int32)}


_APPLY_CACHE = {}


def apply(module, params, batch, deterministic=True, rngs=None):
  """Jitted forward pass, compiled once per module (eager Flax dispatch is slow on CPU)."""
  key = _module_key(module) + (deterministic,)
  if key not in _APPLY_CACHE:
    _APPLY_CACHE[key] = jax.jit(
        lambda p, b, r: module.apply({"params": p}, **b, deterministic=deterministic, rngs=r))
  return _APPLY_CACHE[key](params, batch, rngs or {})
