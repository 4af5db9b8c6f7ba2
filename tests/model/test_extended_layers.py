"""Methods inside the layers (IA3, per-layer prompts, decoder prompts), pinned to the plain model
and to references built from it, with the layers unrolled and scanned."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_tuning.config.errors import ConfigError
from prompt_tuning.config.errors import UsageError
from prompt_tuning.model import decoding
from prompt_tuning.model import layer_stack
from prompt_tuning.model import prompted as model_lib
from prompt_tuning.model import t5
from prompt_tuning.model.extended import decoder_prompt
from prompt_tuning.model.extended import deep
from prompt_tuning.model.extended import ia3
from tests import tiny

P = 3
LAYOUTS = ("unrolled", "scanned")


def _cfg(layout, **kw):
  return tiny.tiny_config(num_encoder_layers=3, scan_layers=layout == "scanned", **kw)


def _frozen(layout, seed=0):
  """The plain model's parameters (prompt included), in the layout's layer layout."""
  params = tiny.random_params(model_lib.build(_cfg("unrolled"), P), seed)
  return layer_stack.stack_layers(params) if layout == "scanned" else params


def _logits(module, params, batch):
  return np.asarray(tiny.apply(module, params, batch))


def _random_method_params(module, seed=7, scale=0.5):
  params = {k: v for k, v in tiny.random_params(module).items() if k in model_lib.METHOD_FIELDS}
  keys = iter(jax.random.split(jax.random.PRNGKey(seed), 64))
  return jax.tree.map(lambda x: x + scale * jax.random.normal(next(keys), x.shape), params)


# ----------------------------------------------------------------------------- IA3


@pytest.mark.parametrize("layout", LAYOUTS)
def test_ia3_at_its_initial_value_is_the_frozen_model_exactly(layout):
  base = _frozen(layout)
  module = model_lib.build(_cfg(layout), P, ia3=ia3.ia3())
  initial = model_lib.init_prompt(module, lambda *a: base["prompt"]["prompt"], jax.random.PRNGKey(0), base)
  assert sorted(initial["ia3"]) == sorted([f"encoder_{n}" for n in ia3.ENCODER] + [f"decoder_{n}" for n in ia3.DECODER])
  assert initial["ia3"]["encoder_mlp"].shape == (3, 32) and initial["ia3"]["decoder_cross_key"].shape == (2, 8)
  batch = tiny.random_batch()
  got = _logits(module, {**base, **initial}, batch)
  np.testing.assert_array_equal(got, _logits(model_lib.build(_cfg(layout), P), base, batch))


def _scaled_kernels(params, scales):
  """The plain model whose kernels absorb IA3's scales: keys / values scale the key / value
  kernels' output columns, the MLP's hidden scale the rows of `wo` (unrolled layout)."""
  params = jax.tree.map(lambda x: x, params)
  def scale(stack, i, path, vector, axis):
    node = params[stack][f"layers_{i}"]
    for key in path[:-1]:
      node = node[key]
    kernel = node[path[-1]]
    node[path[-1]] = kernel * (vector[None, :] if axis == 1 else vector[:, None])
  for i in range(3):
    scale("encoder", i, ("attention", "key", "kernel"), scales["encoder_key"][i], 1)
    scale("encoder", i, ("attention", "value", "kernel"), scales["encoder_value"][i], 1)
    scale("encoder", i, ("mlp", "wo", "kernel"), scales["encoder_mlp"][i], 0)
  for i in range(2):
    for attn, name in (("self_attention", "self"), ("encoder_decoder_attention", "cross")):
      scale("decoder", i, (attn, "key", "kernel"), scales[f"decoder_{name}_key"][i], 1)
      scale("decoder", i, (attn, "value", "kernel"), scales[f"decoder_{name}_value"][i], 1)
    scale("decoder", i, ("mlp", "wo", "kernel"), scales["decoder_mlp"][i], 0)
  return params


def test_ia3_scales_equal_kernels_that_absorb_them():
  """Scanned layers (each reads its row of the scales) against the unrolled plain model."""
  module = model_lib.build(_cfg("scanned"), P, ia3=ia3.ia3())
  scales = _random_method_params(module)
  base = _frozen("unrolled")
  batch = tiny.random_batch()
  got = _logits(module, {**_frozen("scanned"), **scales}, batch)
  want = _logits(model_lib.build(_cfg("unrolled"), P), _scaled_kernels(base, scales["ia3"]), batch)
  np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5)


# ----------------------------------------------------------------------------- per-layer prompts


@pytest.mark.parametrize("layout", LAYOUTS)
def test_per_layer_prompts_switched_off_are_the_plain_prompt(layout):
  base, batch = _frozen(layout), tiny.random_batch()
  plain = _logits(model_lib.build(_cfg(layout), P), base, batch)
  off = model_lib.build(_cfg(layout), P, deep_prompt=deep.deep_prompt(layers=()))
  assert "deep_prompt" not in tiny.random_params(off)
  np.testing.assert_array_equal(_logits(off, base, batch), plain)
  added = model_lib.build(_cfg(layout), P, deep_prompt=deep.deep_prompt(mode="add"))
  zeros = model_lib.init_prompt(added, lambda *a: base["prompt"]["prompt"], jax.random.PRNGKey(0), base)
  assert zeros["deep_prompt"]["prompt"].shape == (2, P, 16) and not np.any(zeros["deep_prompt"]["prompt"])
  np.testing.assert_array_equal(_logits(added, {**base, **zeros}, batch), plain)


@pytest.mark.parametrize("mode", deep.MODES)
def test_a_layers_prompt_replaces_or_adds_to_its_input_at_the_prompt_positions(mode):
  """Layer 1's captured output equals layer 1 applied by hand to layer 0's output with its first
  P positions replaced by (or added) the layer's prompt; layer 0 keeps the plain prompt."""
  cfg = _cfg("unrolled")
  module = model_lib.build(cfg, P, deep_prompt=deep.deep_prompt(layers=[1, 2], mode=mode))
  params = {**_frozen("unrolled"), **_random_method_params(module)}
  batch = tiny.random_batch()
  _, state = module.apply({"params": params}, **batch, capture_intermediates=True, mutable=["intermediates"])
  outputs = state["intermediates"]["encoder"]
  layer0, layer1 = outputs["layers_0"]["__call__"][0], outputs["layers_1"]["__call__"][0]
  prompt1 = params["deep_prompt"]["prompt"][0]  # the first chosen layer: 1
  head = prompt1[None] if mode == "replace" else layer0[:, :P] + prompt1[None]
  layer1_input = jnp.concatenate([jnp.broadcast_to(head, layer0[:, :P].shape), layer0[:, P:]], 1)
  length = layer0.shape[1]
  bias = t5.RelativePositionBias(8, 16, 2, True).apply(
      {"params": params["encoder"]["relpos_bias"]}, length, length)
  mask = jnp.concatenate([jnp.ones((4, P), bool), batch["encoder_input_tokens"] > 0], 1)[:, None, None, :]
  by_hand = t5.EncoderLayer(cfg).apply({"params": params["encoder"]["layers_1"]}, layer1_input, mask, bias, True)
  np.testing.assert_allclose(layer1, by_hand, rtol=1e-5, atol=1e-5)
  scanned = model_lib.build(_cfg("scanned"), P, deep_prompt=deep.deep_prompt(layers=[1, 2], mode=mode))
  np.testing.assert_allclose(_logits(scanned, layer_stack.stack_layers(params), batch),
                             _logits(module, params, batch), rtol=1e-5, atol=1e-5)


def test_per_layer_prompts_refuse_what_they_cannot_serve():
  cfg = _cfg("unrolled")
  with pytest.raises(ConfigError, match="take the positions of a prefix prompt.*'suffix'"):
    model_lib.build(cfg, P, placement="suffix", deep_prompt=deep.deep_prompt())
  with pytest.raises(ConfigError, match=r"layers \[3\] are not encoder layers: the encoder has layers 0..2"):
    model_lib.build(cfg, P, deep_prompt=deep.deep_prompt(layers=[1, 3]))
  with pytest.raises(UsageError, match=r"PER_LAYER_LAYERS = \[1, 1\] names a layer twice"):
    deep.deep_prompt(layers=[1, 1])
  assert "per-layer prompts" in model_lib.packing_conflicts(model_lib.build(cfg, P, deep_prompt=deep.deep_prompt()))


# ----------------------------------------------------------------------------- decoder prompts

VOCAB, TARGETS = 8, 5


def _decoder_setup(layout, length):
  cfg = tiny.tiny_config(vocab_size=VOCAB, num_heads=4, scan_layers=layout == "scanned")
  module = model_lib.build(cfg, P, decoder_prompt=decoder_prompt.decoder_prompt(length))
  params = tiny.random_params(model_lib.build(tiny.tiny_config(vocab_size=VOCAB, num_heads=4), P), seed=3)
  params = layer_stack.stack_layers(params) if layout == "scanned" else params
  if length:
    params["decoder_prompt"] = {"prompt": jax.random.normal(jax.random.PRNGKey(4), (length, 16))}
  return module, params, tiny.random_batch(vocab=VOCAB, targets_len=TARGETS)


def test_a_decoder_prompt_of_length_0_is_todays_model():
  module, params, batch = _decoder_setup("unrolled", 0)
  plain = model_lib.build(tiny.tiny_config(vocab_size=VOCAB, num_heads=4), P)
  np.testing.assert_array_equal(_logits(module, params, batch), _logits(plain, params, batch))
  encoded, mask = decoding.encode(plain, params, batch["encoder_input_tokens"])
  same = [jax.tree.map(np.asarray, decoding.init_cache(m, params, encoded, mask, TARGETS)) for m in (module, plain)]
  for a, b in zip(jax.tree.leaves(same[0]), jax.tree.leaves(same[1])):
    np.testing.assert_array_equal(a, b)


def test_teacher_forcing_with_a_decoder_prompt_is_the_plain_decoder_after_those_embeddings():
  """A decoder prompt that equals the embeddings of tokens z gives, at the target positions, the
  plain model's logits on decoder inputs [z; y]."""
  module, params, batch = _decoder_setup("unrolled", 2)
  z = np.asarray([5, 3])
  params["decoder_prompt"] = {"prompt": params["token_embedder"]["embedding"][z]}
  b = batch["decoder_input_tokens"].shape[0]
  plain_batch = {**batch,
                 "decoder_input_tokens": jnp.concatenate([jnp.tile(z, (b, 1)), batch["decoder_input_tokens"]], 1),
                 "decoder_target_tokens": jnp.concatenate([jnp.ones((b, 2), jnp.int32), batch["decoder_target_tokens"]], 1)}
  plain = model_lib.build(tiny.tiny_config(vocab_size=VOCAB, num_heads=4), P)
  got = _logits(module, params, batch)
  assert got.shape == (4, TARGETS, VOCAB)
  np.testing.assert_allclose(got, _logits(plain, params, plain_batch)[:, 2:], rtol=1e-6, atol=1e-6)


@functools.lru_cache(maxsize=None)
def _decoders(layout):
  module, params, batch = _decoder_setup(layout, 3)
  jit = lambda fn, **kw: jax.jit(functools.partial(fn, module, **kw))
  return module, params, batch, {"greedy": jit(decoding.greedy, max_decode_length=TARGETS),
                                 "beam": jit(decoding.beam_search, max_decode_length=TARGETS, num_decodes=3),
                                 "score": jit(decoding.score)}


def test_cached_decoding_with_a_decoder_prompt_equals_the_full_sequence_logits():
  """Unrolled layers; the scanned ones are pinned to these below."""
  module, params, batch, run = _decoders("unrolled")
  enc, targets = batch["encoder_input_tokens"], batch["decoder_target_tokens"]
  full = _logits(module, params, batch)

  @jax.jit
  def stepwise(params):
    encoded, mask = decoding.encode(module, params, enc)
    cache = decoding.init_cache(module, params, encoded, mask, TARGETS)

    def step(cache, token):
      logits, cache = decoding.decode_step(module, params, cache, encoded, mask, token)
      return cache, logits
    return jax.lax.scan(step, cache, batch["decoder_input_tokens"].T)[1].transpose(1, 0, 2)

  valid = np.asarray(targets > 0)  # padded target positions see other keys under teacher forcing
  np.testing.assert_allclose(np.asarray(stepwise(params))[valid], full[valid], rtol=1e-5, atol=2e-5)
  # Greedy and beam search: outputs without the prompt, scores that teacher forcing gives them.
  tokens, loglik = run["greedy"](params, enc)
  assert tokens.shape == (4, TARGETS)
  scored = run["score"](params, {"encoder_input_tokens": enc, "decoder_target_tokens": tokens})
  np.testing.assert_allclose(loglik, scored, rtol=1e-5, atol=1e-5)
  seqs, scores = run["beam"](params, enc)
  flat = np.asarray(seqs).reshape(-1, TARGETS)
  lengths = np.minimum((flat > 0).sum(1), TARGETS)
  rescored = run["score"](params, {"encoder_input_tokens": jnp.repeat(enc, 3, 0), "decoder_target_tokens": flat})
  np.testing.assert_allclose(np.asarray(scores).reshape(-1),
                             np.asarray(rescored) / np.asarray(decoding.length_penalty(lengths, 0.6)),
                             rtol=1e-5, atol=1e-4)


def test_scanned_and_unrolled_decoder_prompts_agree():
  (m1, p1, batch, r1), (m2, p2, _, r2) = _decoders("unrolled"), _decoders("scanned")
  np.testing.assert_allclose(_logits(m2, p2, batch), _logits(m1, p1, batch), rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(r2["greedy"](p2, batch["encoder_input_tokens"])[0],
                                r1["greedy"](p1, batch["encoder_input_tokens"])[0])
