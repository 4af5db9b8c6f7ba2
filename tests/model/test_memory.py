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
from prompt_tuning.model import prompts
from prompt_tuning.model import t5
from prompt_tuning.training import step as ts
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
                            dtype="bfloat16", frozen_dtype="bfloat16", attention="xla", trainable="prompt")
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


def _straightforward_attend(q, k, v, mask, position_bias, dropout_rng, *, dtype, dropout_rate):
  """Attention as first written: float32 scores out of the matmul, autodiff of jax.nn.softmax."""
  logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
  logits = jnp.where(mask, logits if position_bias is None else logits + position_bias, -1e10)
  return jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, axis=-1).astype(dtype), v)


def _score_matmuls(module, prompt, frozen, batch, length):
  """(inputs, output) dtypes of every matmul of the step that reads or writes [b, h, q, k] scores."""
  grad = lambda p, f, b: jax.grad(lambda q: ts.loss_fn(q, f, b, None, module=module)[0])(p)
  dots = [e for e in jax.make_jaxpr(grad)(prompt, frozen, batch).jaxpr.eqns if e.primitive.name == "dot_general"]
  avals = [[v.aval for v in e.invars + e.outvars] for e in dots]
  return [{str(a.dtype) for a in group} for group in avals
          if any(a.shape[-2:] == (length, length) for a in group)]


def test_score_matmuls_move_bf16_and_the_step_stays_within_bf16_tolerance(monkeypatch):
  """The matmuls around the attention scores read and write the compute dtype (the scores come
  out of q k^T in bf16; bias, mask and softmax stay float32), so no float32 [b, h, q, k] tensor
  crosses a matmul and the query/key gradient matmuls are bf16 ones; loss and prompt gradient
  stay within bf16 rounding of the straightforward step and of a float32 step."""
  cfg = tiny.tiny_config(dtype="bfloat16", num_heads=2, num_encoder_layers=3)
  module, plain = model_lib.build(cfg, prompt_length=4), model_lib.build(cfg.replace(dtype="float32"), prompt_length=4)
  prompt, frozen = model_lib.split(tiny.random_params(plain, seed=3))
  prompt = model_lib.init_prompt(plain, prompts.sampled_vocab(), jax.random.PRNGKey(0), frozen)
  batch = tiny.random_batch(batch=4, inputs_len=24, targets_len=4, seed=1)  # + 4 prompt = 28
  half = model_lib.cast_frozen(frozen, jnp.bfloat16)
  matmuls = _score_matmuls(module, prompt, half, batch, 28)
  assert len(matmuls) == 6 * cfg.num_encoder_layers  # q k^T, p v; and their four gradients
  assert all(dtypes == {"bfloat16"} for dtypes in matmuls), matmuls

  def loss_and_grad(m, f):
    return jax.jit(jax.value_and_grad(lambda p: ts.loss_fn(p, f, batch, None, module=m)[0]))(prompt)
  results = {"ours": loss_and_grad(module, half), "float32": loss_and_grad(plain, frozen)}
  monkeypatch.setattr(t5, "attend", _straightforward_attend)
  assert any("float32" in d for d in _score_matmuls(module, prompt, half, batch, 28))  # the check bites
  results["straightforward"] = loss_and_grad(module, half)
  loss, grad = results["ours"]
  for name in ("straightforward", "float32"):
    ref_loss, ref_grad = results[name]
    np.testing.assert_allclose(loss, ref_loss, rtol=2e-2, err_msg=name)
    a, b = grad["prompt"]["prompt"], ref_grad["prompt"]["prompt"]
    assert float(jnp.sum(a * b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b))) > 0.99, name
    np.testing.assert_allclose(jnp.linalg.norm(a), jnp.linalg.norm(b), rtol=5e-2, err_msg=name)
