"""Scanned layers (`T5Config.scan_layers`): the numbers of the unrolled layers (float32, one device
and a (4, 2) mesh), one layer body per stack in the program, and the stacked layout's conversion
to and from T5X's `layers_{i}` names."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import traverse_util

from prompt_tuning.model import decoding
from prompt_tuning.model import layer_stack
from prompt_tuning.model import params as params_lib
from prompt_tuning.model import prompted as model_lib
from prompt_tuning.parallel import partitioning
from prompt_tuning.training import step as ts
from tests import tiny

VOCAB, T = 8, 6  # a vocabulary small enough that EOS is likely and beams reorder


def cfg(**kw):
  return tiny.tiny_config(vocab_size=VOCAB, num_heads=4, num_encoder_layers=3, num_decoder_layers=2,
                          **kw)


@functools.lru_cache(maxsize=None)
def models(**kw):
  """(unrolled module, scanned module, unrolled params, the same params stacked)."""
  unrolled = model_lib.build(cfg(**kw), prompt_length=3)
  scanned = model_lib.build(cfg(scan_layers=True, **kw), prompt_length=3)
  params = tiny.random_params(unrolled, seed=5)
  return unrolled, scanned, params, layer_stack.stack_layers(params)


def flat(tree):
  return traverse_util.flatten_dict(tree, sep="/")


def test_scanned_parameters_are_the_unrolled_ones_stacked_on_a_leading_layers_axis():
  unrolled, scanned, params, stacked = models()
  boxed = flat(params_lib.abstract_params(scanned))
  layers = {n: b for n, b in boxed.items() if "/layers/" in n}
  assert len(layers) == 9 + 14  # encoder: 4 attention + 3 MLP kernels + 2 norms; decoder: 14
  for name, box in layers.items():
    assert box.names[0] == "layers" and box.value.shape[0] == (3 if name.startswith("encoder") else 2)
    np.testing.assert_array_equal(flat(stacked)[name][1], flat(params)[name.replace("/layers/", "/layers_1/")])
  # One shared position table per stack, as in the checkpoints: not tiled over the layers.
  assert boxed["encoder/relpos_bias/rel_embedding"].value.shape == (4, 8)
  assert not any(n.startswith("encoder/layers_") for n in boxed)
  # The conversion agrees with the module's own layout, and round-trips exactly.
  shapes = jax.eval_shape(lambda: params)
  assert jax.tree.map(lambda s: s.shape, layer_stack.stack_layers(shapes)) == \
      jax.tree.map(lambda b: b.value.shape, params_lib.abstract_params(scanned),
                   is_leaf=lambda x: isinstance(x, nn.Partitioned))
  back = layer_stack.unstack_layers(stacked)
  assert flat(back).keys() == flat(params).keys()
  for name, value in flat(back).items():
    np.testing.assert_array_equal(value, flat(params)[name])
  assert layer_stack.unstack_layers(params).keys() == params.keys()  # unrolled trees pass through


def test_layer_names_convert_both_ways_and_gaps_are_refused():
  assert layer_stack.stacked_name("encoder/layers_11/mlp/wo/kernel") == ("encoder/layers/mlp/wo/kernel", 11)
  assert layer_stack.stacked_name("decoder/relpos_bias/rel_embedding") == ("decoder/relpos_bias/rel_embedding", None)
  assert layer_stack.layer_name("decoder/layers/mlp/wo/kernel", 7) == "decoder/layers_7/mlp/wo/kernel"
  with pytest.raises(ValueError, match=r"encoder/layers/x: layers \[0, 2\] are not numbered 0..1"):
    layer_stack.stack_layers({"encoder": {"layers_0": {"x": np.ones(2)}, "layers_2": {"x": np.ones(2)}}})


def test_the_layers_axis_is_never_split_over_the_mesh():
  _, scanned, _, _ = models()
  _, frozen = params_lib.shardings(scanned, partitioning.create_mesh((4, 2)), partitioning.logical_rules())
  assert tuple(frozen["encoder"]["layers"]["attention"]["query"]["kernel"].spec) == (None, None, "model")
  assert tuple(frozen["decoder"]["layers"]["mlp"]["wo"]["kernel"].spec) == (None, "model", None)


def grad_of(module, params, batch):
  prompt, frozen = model_lib.split(params)
  return jax.jit(jax.value_and_grad(lambda p: ts.loss_fn(p, frozen, batch, None, module=module)[0]))(prompt)


def test_loss_and_prompt_gradient_equal_the_unrolled_layers_with_every_remat():
  """Remat applies per layer inside the scan: none, dots and full all give the unrolled numbers."""
  unrolled, _, params, stacked = models()
  batch = tiny.random_batch(batch=4, inputs_len=9, targets_len=T, vocab=VOCAB, seed=2)
  loss0, g0 = grad_of(unrolled, params, batch)
  assert float(jnp.abs(g0["prompt"]["prompt"]).max()) > 1e-3  # a real gradient, not zeros
  for remat in ("none", "dots", "full"):
    loss1, g1 = grad_of(models(remat=remat)[1], stacked, batch)
    np.testing.assert_allclose(loss1, loss0, rtol=1e-6, err_msg=remat)
    np.testing.assert_allclose(g1["prompt"]["prompt"], g0["prompt"]["prompt"], rtol=1e-5, atol=1e-5,
                               err_msg=remat)


def _scan_inputs(jaxpr):
  """The input shapes of every scan in a jaxpr (its top level)."""
  return [[tuple(v.aval.shape) for v in e.invars] for e in jaxpr.eqns if e.primitive.name == "scan"]


def test_the_position_bias_is_computed_once_and_broadcast_into_the_scan():
  _, scanned, _, stacked = models()
  batch = tiny.random_batch(batch=4, inputs_len=9, targets_len=T, vocab=VOCAB)
  jaxpr = jax.make_jaxpr(lambda p: scanned.apply({"params": p}, **batch))(stacked).jaxpr
  encoder_scan, decoder_scan = _scan_inputs(jaxpr)
  length = 9 + 3
  assert (1, 4, length, length) in encoder_scan  # the [1, heads, q, k] bias, as one input
  assert (1, 4, T, T) in decoder_scan
  assert (4, 8) not in encoder_scan + decoder_scan  # the table itself never enters the loop
  assert (3, 4, 8) not in encoder_scan  # nor a tiled copy


def test_the_program_does_not_grow_with_depth():
  """One layer body per stack: 6 layers lower to the same program size as 2 (unrolled: ~3x)."""
  def lines(scan, layers):
    module = model_lib.build(cfg(scan_layers=scan, remat="full").replace(
        num_encoder_layers=layers, num_decoder_layers=layers), prompt_length=3)
    prompt, frozen = model_lib.split(nn.meta.unbox(params_lib.abstract_params(module)))
    batch = tiny.random_batch(batch=4, inputs_len=9, targets_len=T, vocab=VOCAB)
    step = jax.jit(jax.grad(lambda p, f: ts.loss_fn(p, f, batch, None, module=module)[0]))
    return len(step.lower(prompt, frozen).as_text().splitlines())
  assert lines(True, 6) == lines(True, 2)
  assert lines(False, 6) > 2.5 * lines(False, 2)


def _decode_all(module, params, batch):
  """Greedy, beam (4), sampled (2 per example) outputs and teacher-forced scores, in one program."""
  inputs = batch["encoder_input_tokens"]
  return {"greedy": decoding.greedy(module, params, inputs, T),
          "beam": decoding.beam_search(module, params, inputs, T, num_decodes=4),
          "sample": decoding.sample(module, params, inputs, T, jax.random.PRNGKey(3), num_decodes=2),
          "score": decoding.score(module, params, batch)}


@functools.lru_cache(maxsize=None)
def unrolled_outputs():
  unrolled, _, params, _ = models()
  batch = tiny.random_batch(batch=4, inputs_len=9, targets_len=T, vocab=VOCAB, seed=2)
  return batch, jax.jit(functools.partial(_decode_all, unrolled))(params, batch)


def _assert_same_outputs(got, want):
  for name in ("greedy", "beam", "sample"):
    np.testing.assert_array_equal(got[name][0], want[name][0], err_msg=name)
    assert len({tuple(np.asarray(r).ravel()) for r in want[name][0]}) > 1  # rows differ: a real check
    np.testing.assert_allclose(got[name][1], want[name][1], rtol=1e-5, atol=1e-5, err_msg=name)
  np.testing.assert_allclose(got["score"], want["score"], rtol=1e-5, atol=1e-5)


def test_decoding_and_scores_equal_the_unrolled_layers():
  """Beam search reorders the cache along its batch axis, which the layers axis moves to 1."""
  _, scanned, _, stacked = models()
  batch, want = unrolled_outputs()
  _assert_same_outputs(jax.jit(functools.partial(_decode_all, scanned))(stacked, batch), want)


def test_scanned_decoding_on_a_4x2_mesh_equals_unrolled_on_one_device():
  _, scanned, _, stacked = models()
  batch, want = unrolled_outputs()
  mesh, rules = partitioning.create_mesh((4, 2)), partitioning.logical_rules()
  prompt, frozen = model_lib.split(stacked)
  frozen = jax.device_put(frozen, params_lib.shardings(scanned, mesh, rules)[1])
  with partitioning.activation_context(mesh, rules):
    got = jax.jit(functools.partial(_decode_all, scanned))(
        model_lib.merge(prompt, frozen), jax.device_put(batch, partitioning.batch_sharding(mesh)))
  _assert_same_outputs(got, want)
