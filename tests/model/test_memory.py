"""What the backward pass keeps: custom VJPs that save less give the same gradients, and the
saved activations of the paper's sizes fit the memory the benchmark's remat table assumes."""
import argparse

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from prompt_tuning import bench
from prompt_tuning.model import prompted as model_lib
from prompt_tuning.model import t5
from tests import tiny


def _rand(shape, seed, dtype=jnp.float32):
  return jax.random.normal(jax.random.PRNGKey(seed), shape, jnp.float32).astype(dtype)


def test_rms_norm_gradients_equal_autodiff_of_the_formula():
  x, scale, g = _rand((3, 5, 16), 0), 1 + 0.1 * _rand((16,), 1), _rand((3, 5, 16), 2)
  np.testing.assert_array_equal(t5.rms_norm(x, scale, jnp.float32, 1e-6),
                                t5._rms_norm(x, scale, jnp.float32, 1e-6))
  custom = jax.vjp(lambda a, s: t5.rms_norm(a, s, jnp.float32, 1e-6), x, scale)[1](g)
  plain = jax.vjp(lambda a, s: t5._rms_norm(a, s, jnp.float32, 1e-6), x, scale)[1](g)
  for c, p in zip(custom, plain):
    np.testing.assert_allclose(c, p, rtol=1e-5, atol=1e-5)


def test_gated_gelu_gradients_equal_autodiff_of_the_formula():
  a, b, g = _rand((4, 7, 32), 3), _rand((4, 7, 32), 4), _rand((4, 7, 32), 5)
  plain = lambda x, y: nn.gelu(x) * y
  np.testing.assert_array_equal(t5.gated_activation(a, b, "gelu"), plain(a, b))
  custom = jax.vjp(lambda x, y: t5.gated_activation(x, y, "gelu"), a, b)[1](g)
  reference = jax.vjp(plain, a, b)[1](g)
  for c, r in zip(custom, reference):
    np.testing.assert_allclose(c, r, rtol=1e-5, atol=1e-6)


def test_softmax_gradient_equals_autodiff_and_keeps_the_output_dtype():
  logits, g = 3 * _rand((2, 3, 5, 9), 6), _rand((2, 3, 5, 9), 7)
  custom = jax.vjp(lambda x: t5.softmax_as(x, jnp.float32), logits)[1](g)[0]
  plain = jax.vjp(lambda x: jax.nn.softmax(x, axis=-1), logits)[1](g)[0]
  np.testing.assert_allclose(custom, plain, rtol=1e-5, atol=1e-6)
  assert t5.softmax_as(logits, jnp.bfloat16).dtype == jnp.bfloat16


def _saved(cfg, batch=2, inputs_len=28, targets_len=4, prompt_len=4):
  module = model_lib.build(cfg, prompt_length=prompt_len)
  args = bench.abstract_inputs(module, batch, inputs_len, targets_len, jnp.bfloat16)
  return bench.saved_activations(module, *args)


def test_attention_keeps_only_bf16_probabilities_for_backward():
  cfg = tiny.tiny_config(dtype="bfloat16", num_heads=2)
  scores = [a for a in _saved(cfg) if a.shape == (2, 2, 32, 32)]  # [b, h, q, k] of the encoder
  assert len(scores) == cfg.num_encoder_layers  # one per layer: no float32 logits, mask or copy
  assert {str(a.dtype) for a in scores} == {"bfloat16"}


def test_remat_policies_keep_less_in_order():
  sizes = {}
  for remat in ("none", "dots", "full"):
    saved = _saved(tiny.tiny_config(dtype="bfloat16", remat=remat))
    sizes[remat] = sum(a.size * a.dtype.itemsize for a in saved)
  assert sizes["none"] > sizes["dots"] > sizes["full"] > 0


def _record(size, remat):
  args = argparse.Namespace(batch=32, inputs_len=512, targets_len=8, prompt_len=100,
                            dtype="bfloat16", frozen_dtype="bfloat16", attention="xla")
  return bench.memory_record(size, remat, args)


@pytest.mark.parametrize("size,remat,limit_gib", [
    ("base", "none", 8.0),    # 7.5 GiB measured; 28.9 before the leaner softmax/norm/GELU
    ("xl", "none", 45.0),     # 44.6 GiB: xl needs no recomputation on an 80 GB card
    ("xxl", "full", 25.0),    # 24.9 GiB of the 80 the issue allows for xxl at batch 32
])
def test_paper_sizes_at_batch_32_keep_what_the_remat_table_assumes(size, remat, limit_gib):
  rec = _record(size, remat)
  assert rec["weights_gib"] + rec["saved_activations_gib"] < limit_gib
  assert bench.REMAT[size] == remat


def test_auto_remat_picks_the_least_recomputation_that_fits():
  args = argparse.Namespace(batch=4, inputs_len=64, targets_len=4, prompt_len=8,
                            dtype="bfloat16", frozen_dtype="bfloat16", attention="xla")
  total = {r: sum(bench.memory_bytes("tiny", r, args)) for r in ("none", "dots")}
  assert total["none"] > total["dots"]
  limit = lambda n_bytes: n_bytes / bench.MEMORY_HEADROOM
  assert bench.choose_remat("tiny", args, limit(total["none"] * 1.01)) == "none"
  assert bench.choose_remat("tiny", args, limit((total["none"] + total["dots"]) / 2)) == "dots"
  assert bench.choose_remat("tiny", args, limit(total["dots"] * 0.9)) == "full"
  assert bench.choose_remat("xxl", args, None) == bench.REMAT["xxl"]
