"""Decoding against brute force: cached steps vs full passes, greedy vs argmax chains, beam search
vs exhaustive enumeration, sampling limits, top-p on a hand-made distribution."""
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_tuning.model import decoding
from prompt_tuning.model import params as params_lib
from prompt_tuning.model import prompted as model_lib
from tests import tiny

VOCAB = 8  # small enough to enumerate, and EOS (id 1) is a likely token
T = 6
SETUPS = {  # name -> (placement, num_prompts)
    "prefix": ("prefix", 0),
    "suffix": ("suffix", 0),
    "table": ("prefix", 3),
}
_MODELS = {}
_JITS = {}


@functools.lru_cache(maxsize=None)
def shared_params():
  cfg = tiny.tiny_config(vocab_size=VOCAB, num_encoder_layers=1)
  # Seed 5 gives a tiny model whose greedy outputs vary across rows and end at various steps.
  return tiny.random_params(model_lib.build(cfg, prompt_length=3), seed=5)


def setup(name):
  """(module, params, batch) for a prompted tiny model; batch rows use different prompts."""
  if name not in _MODELS:
    placement, num_prompts = SETUPS[name]
    cfg = tiny.tiny_config(vocab_size=VOCAB, num_encoder_layers=1)  # two cached decoder layers
    module = model_lib.build(cfg, prompt_length=3,
                             placement=placement, num_prompts=num_prompts)
    params = shared_params()
    if num_prompts:  # the backbone is shared; the table gets distinct random prompts
      table = jax.random.uniform(jax.random.PRNGKey(4), (num_prompts, 3, cfg.emb_dim), minval=-1)
      params = {**params, "prompt": {"prompt": table}}
    batch = tiny.random_batch(batch=4, inputs_len=7, targets_len=T, vocab=VOCAB, seed=2)
    if num_prompts:
      batch["prompt_ids"] = jnp.array([0, 1, 2, 1], jnp.int32)
    _MODELS[name] = module, params, batch
  return _MODELS[name]


def jitted(name, fn_name, **static):
  """One compiled decoding function per (setup, function, static arguments)."""
  key = (name, fn_name, tuple(sorted(static.items())))
  if key not in _JITS:
    module = setup(name)[0]
    _JITS[key] = jax.jit(functools.partial(getattr(decoding, fn_name), module, **static))
  return _JITS[key]


def teacher_forced(targets, encoder_input_tokens, prompt_ids=None):
  targets = jnp.asarray(targets, jnp.int32)
  batch = {"encoder_input_tokens": encoder_input_tokens, "decoder_target_tokens": targets,
           "decoder_input_tokens": decoding.shift_right(targets)}
  if prompt_ids is not None:
    batch["prompt_ids"] = prompt_ids
  return batch


def full_logits(name, targets, encoder_input_tokens, prompt_ids=None):
  module, params, _ = setup(name)
  batch = teacher_forced(targets, encoder_input_tokens, prompt_ids)
  return np.asarray(tiny.apply(module, params, batch))


def brute_force_greedy(name, params, length):
  """The argmax chain (pad id excluded) by one full forward pass per position."""
  module, _, batch = setup(name)
  b = batch["encoder_input_tokens"].shape[0]
  tokens, done = np.zeros((b, length), np.int32), np.zeros(b, bool)
  for i in range(length):
    targets = tokens.copy()
    targets[:, i] = 2  # any non-pad id, so that position i is a real query
    logits = np.asarray(tiny.apply(module, params, teacher_forced(
        targets, batch["encoder_input_tokens"], batch.get("prompt_ids"))))[:, i]
    nxt = np.where(done, 0, logits[:, 1:].argmax(-1) + 1)
    tokens[:, i] = nxt
    done |= nxt == decoding.EOS_ID
  return tokens


def check_padded_after_eos(tokens):
  for row in np.asarray(tokens).reshape(-1, tokens.shape[-1]):
    eos = np.flatnonzero(row == decoding.EOS_ID)
    end = eos[0] + 1 if len(eos) else len(row)
    assert (row[:end] != 0).all() and (row[end:] == 0).all(), row


def swap_eos_column(params, token):
  """Swaps the output columns of EOS and `token`: greedy now stops where it chose `token`."""
  kernel = params["decoder"]["logits_dense"]["kernel"]
  kernel = kernel.at[:, [decoding.EOS_ID, token]].set(kernel[:, [token, decoding.EOS_ID]])
  decoder = {**params["decoder"], "logits_dense": {"kernel": kernel}}
  return {**params, "decoder": decoder}


# ----------------------------------------------------------------------------- KV cache


def test_cached_steps_equal_full_sequence_logits():
  # One setup here; greedy (below) checks the cached steps of every setup against full passes.
  name = "table"
  module, params, batch = setup(name)
  enc, prompt_ids = batch["encoder_input_tokens"], batch.get("prompt_ids")
  b = enc.shape[0]
  targets = np.random.RandomState(3).randint(1, VOCAB, (b, T))  # no padding
  expected = full_logits(name, targets, enc, prompt_ids)

  @jax.jit
  def cached(params, dec_in):
    encoded, mask = decoding.encode(module, params, enc, prompt_ids)

    def step(cache, token):
      logits, cache = decoding.decode_step(module, params, cache, encoded, mask, token)
      return cache, logits

    cache = decoding.init_cache(module, params, encoded, mask, T)
    _, one_by_one = jax.lax.scan(step, cache, dec_in.T)
    # The cache also takes several tokens at once (a forced prefix), then single steps.
    cache = decoding.init_cache(module, params, encoded, mask, T)
    head, variables = module.apply({"params": params, "cache": cache}, encoded, mask,
                                   dec_in[:, :3], None, True, True, mutable=["cache"],
                                   method=module.decode)
    _, tail = jax.lax.scan(step, variables["cache"], dec_in[:, 3:].T)
    return one_by_one.transpose(1, 0, 2), jnp.concatenate([head, tail.transpose(1, 0, 2)], 1)

  one_by_one, chunked = cached(params, decoding.shift_right(jnp.asarray(targets, jnp.int32)))
  np.testing.assert_allclose(np.asarray(one_by_one), expected, atol=2e-5, rtol=1e-5)
  np.testing.assert_allclose(np.asarray(chunked), expected, atol=2e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- greedy


@pytest.mark.parametrize("name", list(SETUPS))
def test_greedy_equals_bruteforce_argmax_chain_and_stops_at_eos(name):
  module, params, batch = setup(name)
  enc, prompt_ids = batch["encoder_input_tokens"], batch.get("prompt_ids")
  run = jitted(name, "greedy", max_decode_length=T)
  tokens, loglik = run(params, enc, prompt_ids=prompt_ids)
  if not (np.asarray(tokens) == decoding.EOS_ID).any():  # make row 0 stop at step 2
    params = swap_eos_column(params, int(tokens[0, 2]))
    tokens, loglik = run(params, enc, prompt_ids=prompt_ids)
  tokens = np.asarray(tokens)
  np.testing.assert_array_equal(tokens, brute_force_greedy(name, params, T))
  ended = (tokens == decoding.EOS_ID).any(axis=1)
  assert ended.any() and not ended.all()  # some rows stop early, others run to the end
  assert (np.argmax(tokens == decoding.EOS_ID, axis=1)[ended] >= 1).any()  # not only at step 0
  check_padded_after_eos(tokens)
  # The decoder's running log-likelihood is the teacher-forced one, up to and including EOS.
  logp = jax.nn.log_softmax(jnp.asarray(tiny.apply(module, params, teacher_forced(
      tokens, enc, prompt_ids))))
  expected = np.sum(np.take_along_axis(np.asarray(logp), tokens[..., None], -1)[..., 0]
                    * (tokens > 0), axis=1)
  np.testing.assert_allclose(np.asarray(loglik), expected, atol=1e-4, rtol=1e-5)


# ----------------------------------------------------------------------------- beam search

BEAM_T = 3
NON_EOS = list(range(2, VOCAB))  # neither pad nor EOS


def enumerate_scores(name):
  """Log-likelihood of every possible output of length <= BEAM_T, by full forward passes.

  Returns {tuple(tokens): [b] log-likelihood}: EOS-terminated sequences of any length and
  EOS-free sequences of exactly BEAM_T tokens (truncated).
  """
  module, params, batch = setup(name)
  enc, prompt_ids = batch["encoder_input_tokens"], batch.get("prompt_ids")
  b = enc.shape[0]
  prefixes = [p for m in range(BEAM_T) for p in itertools.product(NON_EOS, repeat=m)]
  targets = np.zeros((len(prefixes), BEAM_T), np.int32)
  for r, p in enumerate(prefixes):
    targets[r, :len(p) + 1] = list(p) + [2]  # the query position after the prefix is real
  rows = {k: jnp.repeat(v, len(prefixes), axis=0) for k, v in
          (("enc", enc), ("ids", prompt_ids)) if v is not None}
  logits = full_logits(name, np.tile(targets, (b, 1)), rows["enc"], rows.get("ids"))
  logp = jax.nn.log_softmax(jnp.asarray(logits)).reshape(b, len(prefixes), BEAM_T, VOCAB)
  next_logp = {p: np.asarray(logp[:, r, len(p)]) for r, p in enumerate(prefixes)}

  scores = {}
  for p in prefixes:
    prefix_logp = sum(next_logp[p[:j]][:, p[j]] for j in range(len(p))) + np.zeros(b)
    scores[p + (decoding.EOS_ID,)] = prefix_logp + next_logp[p][:, decoding.EOS_ID]
    if len(p) == BEAM_T - 1:
      for t in NON_EOS:
        scores[p + (t,)] = prefix_logp + next_logp[p][:, t]
  return scores


@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_beam_search_returns_k_best_by_exhaustive_enumeration(alpha):
  name, k = "table", 4
  module, params, batch = setup(name)
  enc, prompt_ids = batch["encoder_input_tokens"], batch.get("prompt_ids")
  scores = enumerate_scores(name)
  assert len(scores) == 1 + 6 + 36 + 36 * 6  # EOS after 0, 1, 2 tokens; 216 truncated
  penalized = {s: v / decoding.length_penalty(len(s), alpha) for s, v in scores.items()}
  # A beam as wide as the number of EOS-free prefixes of length 2 (36) is exhaustive.
  run = jitted(name, "beam_search", max_decode_length=BEAM_T, num_decodes=k, beam_size=36)
  seqs, beam_scores = run(params, enc, prompt_ids=prompt_ids, alpha=alpha)
  for i in range(enc.shape[0]):
    best = sorted(penalized, key=lambda s: -penalized[s][i])[:k]
    expected = [list(s) + [0] * (BEAM_T - len(s)) for s in best]
    np.testing.assert_array_equal(np.asarray(seqs[i]), expected)
    np.testing.assert_allclose(np.asarray(beam_scores[i]), [penalized[s][i] for s in best],
                               atol=1e-4, rtol=1e-5)

  # The usual narrow beam (num_decodes = beam size): sorted, and its scores are what `score`
  # and the length penalty give for the sequences it returns.
  run = jitted(name, "beam_search", max_decode_length=BEAM_T, num_decodes=k)
  seqs, beam_scores = run(params, enc, prompt_ids=prompt_ids, alpha=alpha)
  seqs, beam_scores = np.asarray(seqs), np.asarray(beam_scores)
  check_padded_after_eos(seqs)
  assert (np.diff(beam_scores, axis=1) <= 0).all()
  flat = seqs.reshape(-1, BEAM_T)
  lengths = np.minimum((flat > 0).sum(1), BEAM_T)
  scored = jitted(name, "score")(params, teacher_forced(
      flat, jnp.repeat(enc, k, 0), jnp.repeat(prompt_ids, k, 0)))
  expected = np.asarray(scored) / np.asarray(decoding.length_penalty(lengths, alpha))
  np.testing.assert_allclose(beam_scores.reshape(-1), expected, atol=1e-4, rtol=1e-5)
  for i in range(enc.shape[0]):  # each is the enumerated value of its sequence
    for s, v in zip(seqs[i], beam_scores[i]):
      np.testing.assert_allclose(v, penalized[tuple(t for t in s if t)][i], atol=1e-4)


# ----------------------------------------------------------------------------- sampling


def test_sampling_limits_equal_greedy_and_loglik_equals_score():
  name, n = "suffix", 3
  module, params, batch = setup(name)
  enc = batch["encoder_input_tokens"]
  greedy_tokens, greedy_loglik = jitted(name, "greedy", max_decode_length=T)(
      params, enc, prompt_ids=None)
  run = jitted(name, "sample", max_decode_length=T, num_decodes=n)
  rng = jax.random.PRNGKey(7)
  expected = np.repeat(np.asarray(greedy_tokens)[:, None], n, axis=1)
  def draw(temperature=1.0, top_k=0, top_p=1.0):  # always the same traced arguments
    return run(params, enc, rng=rng, prompt_ids=None, temperature=temperature, top_k=top_k,
               top_p=top_p)

  for kw in (dict(top_k=1), dict(temperature=1e-6), dict(temperature=0.0),
             dict(top_p=1e-3, top_k=3)):
    tokens, loglik = draw(**kw)
    np.testing.assert_array_equal(np.asarray(tokens), expected, err_msg=str(kw))
    np.testing.assert_allclose(np.asarray(loglik), np.repeat(np.asarray(greedy_loglik)[:, None],
                                                             n, axis=1), atol=1e-4)

  tokens, loglik = draw()
  tokens = np.asarray(tokens)
  assert tokens.shape == (enc.shape[0], n, T)
  check_padded_after_eos(tokens)
  assert not (tokens == expected).all()  # it does sample
  assert (tokens == decoding.EOS_ID).any()
  flat = tokens.reshape(-1, T)
  scored = jitted(name, "score")(params, teacher_forced(flat, jnp.repeat(enc, n, 0)))
  np.testing.assert_allclose(np.asarray(loglik).reshape(-1), np.asarray(scored), atol=1e-4,
                             rtol=1e-5)
  again, _ = draw()
  np.testing.assert_array_equal(np.asarray(again), tokens)  # same key, same samples


def test_filter_logits_top_k_and_top_p_on_a_hand_made_distribution():
  probs = np.array([0.05, 0.4, 0.1, 0.3, 0.15])
  logits = jnp.log(jnp.asarray(probs, jnp.float32))[None]

  def kept(**kw):
    return set(np.flatnonzero(np.isfinite(np.asarray(decoding.filter_logits(logits, **kw))[0])))

  assert kept() == {0, 1, 2, 3, 4}
  assert kept(top_p=0.3) == {1}  # 0.4 alone reaches 0.3
  assert kept(top_p=0.6) == {1, 3}  # 0.4 < 0.6 <= 0.7
  assert kept(top_p=0.75) == {1, 3, 4}  # 0.7 < 0.75 <= 0.85
  assert kept(top_p=0.9) == {1, 2, 3, 4}  # 0.85 < 0.9 <= 0.95
  assert kept(top_p=0.0) == {1}  # never empty
  assert kept(top_k=2) == {1, 3}
  assert kept(top_k=1, top_p=0.99) == {1}
  # top-p applies to the top-k renormalized mass: {0.4, 0.3, 0.15} -> 0.47, 0.35, 0.18.
  assert kept(top_k=3, top_p=0.8) == {1, 3}
  assert kept(top_k=3, top_p=0.85) == {1, 3, 4}
  # Exactly at the boundary (uniform, exact in float32): mass 0.5 needs two tokens, not three.
  uniform = np.isfinite(np.asarray(decoding.filter_logits(jnp.zeros((1, 4)), top_p=0.5)))
  assert uniform.sum() == 2
  filtered = np.asarray(decoding.filter_logits(logits, top_k=2))[0]
  np.testing.assert_allclose(filtered[[1, 3]], np.log(probs[[1, 3]]), rtol=1e-6)


def test_length_penalty_is_t5s():
  np.testing.assert_allclose(decoding.length_penalty(7, 0.6), ((5 + 7) / 6) ** 0.6, rtol=1e-6)
  assert float(decoding.length_penalty(3, 0.0)) == 1.0


def test_a_decode_step_does_not_project_the_encoding_again():
  """Per decoder layer a step runs 13 matmuls (self q/k/v/o + 2, cross q/o + 2, MLP 3), not 15."""
  module, params, batch = setup("prefix")
  encoded, mask = decoding.encode(module, params, batch["encoder_input_tokens"])
  cache = decoding.init_cache(module, params, encoded, mask, T)
  tokens = jnp.zeros((encoded.shape[0],), jnp.int32)
  jaxpr = jax.make_jaxpr(lambda c: decoding.decode_step(module, params, c, encoded, mask, tokens))(cache)
  assert str(jaxpr).count("dot_general") == module.cfg.num_decoder_layers * 13 + 1  # + logits


@pytest.mark.parametrize("decoder", ["greedy", "beam"])
def test_decoding_with_weights_split_over_a_model_parallel_mesh_equals_one_device(decoder):
  from prompt_tuning.parallel import partitioning
  module = model_lib.build(tiny.tiny_config(num_heads=4, num_encoder_layers=1), prompt_length=3)
  params = tiny.random_params(module, seed=5)
  inputs = tiny.random_batch(batch=4, inputs_len=9)["encoder_input_tokens"]
  run = {"greedy": lambda p, x: decoding.greedy(module, p, x, T),
         "beam": lambda p, x: decoding.beam_search(module, p, x, T, num_decodes=2)}[decoder]
  tokens, scores = jax.jit(run)(params, inputs)
  mesh, rules = partitioning.create_mesh((2, 4)), partitioning.logical_rules()
  prompt, frozen = model_lib.split(params)
  frozen = jax.device_put(frozen, params_lib.shardings(module, mesh, rules)[1])
  assert tuple(frozen["decoder"]["logits_dense"]["kernel"].sharding.spec) == (None, "model")
  with partitioning.activation_context(mesh, rules):
    sharded = jax.jit(run)(model_lib.merge(prompt, frozen),
                           jax.device_put(inputs, partitioning.batch_sharding(mesh)))
  np.testing.assert_array_equal(sharded[0], tokens)
  np.testing.assert_allclose(sharded[1], scores, rtol=1e-5, atol=1e-5)
