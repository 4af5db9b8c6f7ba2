"""The T5 1.1 network: sizes, parameter names, relative positions, masks, dtypes."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_tuning.model import params as params_lib
from prompt_tuning.model import prompted as model_lib
from prompt_tuning.model import t5
from prompt_tuning.training import loss as loss_lib
from tests import tiny

# The paper's Table 4 / §3 counts of frozen parameters.
PAPER_COUNTS = {"small": 76_961_152, "base": 247_577_856, "large": 783_150_080,
                "xl": 2_849_757_184, "xxl": 11_135_332_352}


@pytest.mark.parametrize("size", list(PAPER_COUNTS))
def test_sizes_have_the_papers_parameter_counts(size):
  cfg = t5.config_for(size)
  assert t5.param_count(cfg) == PAPER_COUNTS[size]
  module = model_lib.build(cfg, prompt_length=100)
  shapes = jax.tree.leaves(params_lib.abstract_params(module))
  total = sum(int(np.prod(s.value.shape if hasattr(s, "value") else s.shape)) for s in shapes)
  assert total == PAPER_COUNTS[size] + 100 * cfg.emb_dim  # the prompt is the only addition


def test_parameter_names_and_shapes_are_t5x():
  cfg = tiny.tiny_config(num_encoder_layers=1, num_decoder_layers=1)
  params = tiny.random_params(model_lib.build(cfg, prompt_length=5))
  flat = {"/".join(k.key for k in path): v.shape for path, v in jax.tree_util.tree_leaves_with_path(params)}
  d, inner, f, v = 16, 8, 32, 128
  expected = {
      "token_embedder/embedding": (v, d),
      "prompt/prompt": (5, d),
      "encoder/relpos_bias/rel_embedding": (2, 8),
      "encoder/encoder_norm/scale": (d,),
      "encoder/layers_0/pre_attention_layer_norm/scale": (d,),
      "encoder/layers_0/attention/query/kernel": (d, inner),
      "encoder/layers_0/attention/key/kernel": (d, inner),
      "encoder/layers_0/attention/value/kernel": (d, inner),
      "encoder/layers_0/attention/out/kernel": (inner, d),
      "encoder/layers_0/pre_mlp_layer_norm/scale": (d,),
      "encoder/layers_0/mlp/wi_0/kernel": (d, f),
      "encoder/layers_0/mlp/wi_1/kernel": (d, f),
      "encoder/layers_0/mlp/wo/kernel": (f, d),
      "decoder/relpos_bias/rel_embedding": (2, 8),
      "decoder/decoder_norm/scale": (d,),
      "decoder/logits_dense/kernel": (d, v),
      "decoder/layers_0/pre_self_attention_layer_norm/scale": (d,),
      "decoder/layers_0/pre_cross_attention_layer_norm/scale": (d,),
      "decoder/layers_0/pre_mlp_layer_norm/scale": (d,),
      "decoder/layers_0/mlp/wi_0/kernel": (d, f),
      "decoder/layers_0/mlp/wi_1/kernel": (d, f),
      "decoder/layers_0/mlp/wo/kernel": (f, d),
  }
  for attn in ("self_attention", "encoder_decoder_attention"):
    for name in ("query", "key", "value"):
      expected[f"decoder/layers_0/{attn}/{name}/kernel"] = (d, inner)
    expected[f"decoder/layers_0/{attn}/out/kernel"] = (inner, d)
  assert flat == expected


def test_relative_position_buckets_match_t5_reference_values():
  rel = np.arange(-200, 201)[None, :]
  bi = t5.relative_position_bucket(rel, True, 32, 128)[0]
  causal = t5.relative_position_bucket(rel, False, 32, 128)[0]
  # Exact region, then log-spaced, then clipped; keys after the query use the upper half.
  assert bi[200] == 0 and bi[201] == 17 and bi[199] == 1 and bi[200 + 7] == 23
  assert bi[0] == 15 and bi[-1] == 31 and bi[200 - 8] == 8
  assert (causal[201:] == 0).all() and causal[199] == 1 and causal[0] == 31


def test_padding_does_not_change_real_positions():
  """Extra right padding on inputs or targets leaves the logits of real tokens unchanged."""
  cfg = tiny.tiny_config()
  module = model_lib.build(cfg, prompt_length=4)
  params = tiny.random_params(module)
  batch = tiny.random_batch(batch=2, inputs_len=6, targets_len=4)
  padded = {k: jnp.pad(v, ((0, 0), (0, 5))) for k, v in batch.items()}
  a = tiny.apply(module, params, batch)
  b = tiny.apply(module, params, padded)[:, :4]
  valid = np.asarray(batch["decoder_target_tokens"]) > 0
  np.testing.assert_allclose(np.asarray(a)[valid], np.asarray(b)[valid], atol=1e-5)


def test_bf16_compute_keeps_float32_logits_and_is_close():
  cfg = tiny.tiny_config()
  module32 = model_lib.build(cfg, prompt_length=2)
  module16 = model_lib.build(cfg.replace(dtype="bfloat16"), prompt_length=2)
  params = tiny.random_params(module32)
  batch = tiny.random_batch()
  a = tiny.apply(module32, params, batch)
  b = tiny.apply(module16, params, batch)
  assert a.dtype == jnp.float32 and b.dtype == jnp.float32
  assert 0 < float(jnp.max(jnp.abs(a - b))) < 0.1


def test_dropout_is_active_only_in_training():
  cfg = tiny.tiny_config(dropout_rate=0.5)
  module = model_lib.build(cfg, prompt_length=2)
  params = tiny.random_params(module)
  batch = tiny.random_batch()
  det = tiny.apply(module, params, batch)
  np.testing.assert_array_equal(det, tiny.apply(module, params, batch))
  t1 = tiny.apply(module, params, batch, deterministic=False, rngs={"dropout": jax.random.PRNGKey(1)})
  t2 = tiny.apply(module, params, batch, deterministic=False, rngs={"dropout": jax.random.PRNGKey(2)})
  assert not np.allclose(t1, det) and not np.allclose(t1, t2)


@pytest.mark.parametrize("remat,attention,placement", [
    ("full", "xla", "prefix"), ("dots", "xla", "prefix"),
    ("none", "fused", "prefix"), ("none", "fused", "suffix")])  # fused: padding as key lengths
def test_remat_and_fused_attention_leave_the_output_unchanged(remat, attention, placement):
  cfg = tiny.tiny_config()
  base = model_lib.build(cfg, prompt_length=3, placement=placement)
  other = model_lib.build(cfg.replace(remat=remat, attention=attention), prompt_length=3,
                          placement=placement)
  params = tiny.random_params(base)
  batch = tiny.random_batch()
  np.testing.assert_allclose(tiny.apply(base, params, batch),
                             tiny.apply(other, params, batch), atol=2e-5)


def test_loss_ignores_padding_and_adds_z_loss():
  logits = jnp.asarray(np.random.RandomState(0).randn(2, 3, 5), jnp.float32)
  targets = jnp.asarray([[1, 2, 0], [3, 0, 0]])
  loss, stats = loss_lib.cross_entropy_loss(logits, targets, z_loss=1e-4)
  lse = jax.nn.logsumexp(logits, -1)
  expect = 0.0
  for (i, j) in [(0, 0), (0, 1), (1, 0)]:
    expect += lse[i, j] - logits[i, j, targets[i, j]] + 1e-4 * lse[i, j] ** 2
  np.testing.assert_allclose(loss, expect, rtol=1e-6)
  assert stats["num_tokens"] == 3


@pytest.mark.parametrize("field,value", [("attention", "flash"), ("remat", "some")])
def test_unknown_attention_or_remat_is_refused_with_the_choices(field, value):
  with pytest.raises(ValueError, match=f"unknown {field} '{value}'; choose one of"):
    model_lib.build(tiny.tiny_config(**{field: value}))
