"""Decoding with a prompted encoder: greedy, beam search, sampling, and teacher-forced scoring.

The inputs are encoded once (prompt included); the decoder then runs one token at a time on a
key/value cache inside one `lax.while_loop` that stops when every sequence has produced EOS.
T5 conventions: start id 0, EOS 1, outputs right-padded with 0 after EOS. Static shapes
throughout, so each function jits with the module and lengths held static. The README's
"Decoding" section documents the length penalty, the sampling filters and scoring.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp

Array = jax.Array
Params = Mapping[str, Any]

PAD_ID = 0
EOS_ID = 1
DECODER_START_ID = 0
NEG_INF = -jnp.inf


# ----------------------------------------------------------------------------- encoder and cache


def encode(module, params: Params, encoder_input_tokens: Array,
           prompt_ids: Optional[Array] = None) -> tuple[Array, Array]:
  """The prompted encoding [b, L+P, d] and its mask [b, L+P] (deterministic)."""
  return module.apply({"params": params}, encoder_input_tokens, prompt_ids, True,
                      method=module.encode)


def _decode_apply(module, variables, encoded, encoder_mask, tokens, mode: bool | str = True):
  return module.apply(variables, encoded, encoder_mask, tokens, None, True, mode,
                      mutable=["cache"], method=module.decode)


def init_cache(module, params: Params, encoded: Array, encoder_mask: Array,
               max_decode_length: int) -> Any:
  """A cache for `max_decode_length` steps over `encoded`: empty self-attention keys/values
  (`cache_index` 0) and the encoding's cross-attention keys/values, projected once here. A model
  with a decoder prompt of P_d positions gets a cache of P_d + `max_decode_length` whose first
  P_d positions hold the prompt's keys/values (`cache_index` P_d): decoding continues after it."""
  batch_size = encoded.shape[0]
  prompt_length = getattr(module, "decoder_prompt_length", 0)

  def shape_cache(params):
    tokens = jnp.zeros((batch_size, prompt_length + max_decode_length), jnp.int32)
    _, variables = _decode_apply(module, {"params": params}, encoded, encoder_mask, tokens)
    return variables["cache"]

  empty = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(shape_cache, params))
  if prompt_length:
    prompt_slots = jnp.zeros((batch_size, prompt_length), jnp.int32)  # the module feeds the prompt
    _, variables = _decode_apply(module, {"params": params, "cache": empty}, encoded, encoder_mask,
                                 prompt_slots, "prefill")
    return variables["cache"]
  start = jnp.full((batch_size, 1), DECODER_START_ID, jnp.int32)
  _, variables = _decode_apply(module, {"params": params, "cache": empty}, encoded, encoder_mask,
                               start, "prefill")

  def keep_memory(path, filled, fresh):  # the prefill step's self-attention writes are dropped
    return filled if path[-1].key in ("memory_key", "memory_value") else fresh
  return jax.tree_util.tree_map_with_path(keep_memory, variables["cache"], empty)


def decode_step(module, params: Params, cache: Any, encoded: Array, encoder_mask: Array,
                tokens: Array) -> tuple[Array, Any]:
  """Feeds `tokens` [b] at the cache's next position; returns (float32 logits [b, V], cache)."""
  logits, variables = _decode_apply(module, {"params": params, "cache": cache}, encoded,
                                    encoder_mask, tokens[:, None])
  return logits[:, 0], variables["cache"]


def _reorder_cache(cache: Any, index: Array, batch_axis: int = 0) -> Any:
  """Gathers the per-sequence cache entries (keys and values) along the batch axis, which is 1
  when the layers are scanned (their cache entries are stacked on a leading layers axis)."""
  def gather(path, x):
    name = getattr(path[-1], "key", None)
    return jnp.take(x, index, axis=batch_axis) if name in ("cached_key", "cached_value") else x
  return jax.tree_util.tree_map_with_path(gather, cache)


def _previous_tokens(tokens: Array, i: Array) -> Array:
  """The decoder input at step i: the start id at 0, else the token chosen at i - 1."""
  prev = jax.lax.dynamic_index_in_dim(tokens, jnp.maximum(i - 1, 0), axis=-1, keepdims=False)
  return jnp.where(i == 0, DECODER_START_ID, prev)


# ----------------------------------------------------------------------------- greedy / sampling


def filter_logits(logits: Array, top_k: Array | int = 0, top_p: Array | float = 1.0) -> Array:
  """Sets to -inf every logit outside the top-k, then outside the top-p nucleus.

  top-k keeps the tokens whose logit is at least the k-th largest (ties at the k-th value are
  kept); top-p keeps the smallest set of most likely tokens whose probability mass (after top-k)
  is at least `top_p`, always at least one token. `top_k <= 0` or `top_p >= 1` disables a filter.
  """
  vocab = logits.shape[-1]
  top_k = jnp.asarray(top_k, jnp.int32)
  order = jnp.argsort(-logits, axis=-1)  # most likely first
  sorted_logits = jnp.take_along_axis(logits, order, axis=-1)
  kth = jnp.take(sorted_logits, jnp.clip(top_k - 1, 0, vocab - 1), axis=-1)[..., None]
  logits = jnp.where((top_k <= 0) | (logits >= kth), logits, NEG_INF)

  sorted_logits = jnp.take_along_axis(logits, order, axis=-1)
  probs = jax.nn.softmax(sorted_logits, axis=-1)
  mass_before = jnp.cumsum(probs, axis=-1) - probs
  keep_sorted = (mass_before < top_p) | (jnp.arange(vocab) == 0)
  keep = jnp.take_along_axis(keep_sorted, jnp.argsort(order, axis=-1), axis=-1)
  return jnp.where(keep | (top_p >= 1.0), logits, NEG_INF)


def _autoregressive(module, params, encoded, encoder_mask, max_decode_length, choose, rng):
  """Runs `choose(logits, rng) -> tokens` step by step; returns (tokens [B, T], loglik [B])."""
  batch = encoded.shape[0]
  cache = init_cache(module, params, encoded, encoder_mask, max_decode_length)

  def cond(state):
    i, _, _, done, _ = state
    return (i < max_decode_length) & ~jnp.all(done)

  def body(state):
    i, tokens, cache, done, loglik = state
    logits, cache = decode_step(module, params, cache, encoded, encoder_mask,
                                _previous_tokens(tokens, i))
    allowed = logits.at[:, PAD_ID].set(NEG_INF)
    chosen = jnp.where(done, PAD_ID, choose(allowed, jax.random.fold_in(rng, i)))
    logp = jnp.take_along_axis(jax.nn.log_softmax(logits), chosen[:, None], axis=-1)[:, 0]
    loglik = loglik + jnp.where(done, 0.0, logp)
    tokens = jax.lax.dynamic_update_index_in_dim(tokens, chosen, i, axis=1)
    return i + 1, tokens, cache, done | (chosen == EOS_ID), loglik

  state = (jnp.array(0, jnp.int32), jnp.zeros((batch, max_decode_length), jnp.int32), cache,
           jnp.zeros((batch,), bool), jnp.zeros((batch,), jnp.float32))
  _, tokens, _, _, loglik = jax.lax.while_loop(cond, body, state)
  return tokens, loglik


def greedy(module, params: Params, encoder_input_tokens: Array, max_decode_length: int,
           prompt_ids: Optional[Array] = None) -> tuple[Array, Array]:
  """Argmax decoding; returns (tokens [b, T], their log-likelihood [b])."""
  encoded, mask = encode(module, params, encoder_input_tokens, prompt_ids)
  choose = lambda logits, rng: jnp.argmax(logits, axis=-1).astype(jnp.int32)
  return _autoregressive(module, params, encoded, mask, max_decode_length, choose,
                         jax.random.PRNGKey(0))


def sample(module, params: Params, encoder_input_tokens: Array, max_decode_length: int,
           rng: Array, prompt_ids: Optional[Array] = None, temperature: Array | float = 1.0,
           top_k: Array | int = 0, top_p: Array | float = 1.0,
           num_decodes: int = 1) -> tuple[Array, Array]:
  """Temperature / top-k / top-p sampling of `num_decodes` sequences per example.

  Returns (tokens [b, num_decodes, T], model log-likelihood [b, num_decodes]).
  """
  encoded, mask = encode(module, params, encoder_input_tokens, prompt_ids)
  batch = encoded.shape[0]
  encoded = jnp.repeat(encoded, num_decodes, axis=0)
  mask = jnp.repeat(mask, num_decodes, axis=0)
  temperature = jnp.asarray(temperature, jnp.float32)

  def choose(logits, key):
    scaled = logits / jnp.maximum(temperature, jnp.finfo(jnp.float32).tiny)
    drawn = jax.random.categorical(key, filter_logits(scaled, top_k, top_p), axis=-1)
    return jnp.where(temperature > 0, drawn, jnp.argmax(logits, axis=-1)).astype(jnp.int32)

  tokens, loglik = _autoregressive(module, params, encoded, mask, max_decode_length, choose, rng)
  return (tokens.reshape(batch, num_decodes, max_decode_length),
          loglik.reshape(batch, num_decodes))


# ----------------------------------------------------------------------------- beam search


def length_penalty(length: Array | int, alpha: Array | float) -> Array:
  """T5's brevity penalty ((5 + length) / 6) ** alpha; scores are log-likelihood / penalty."""
  return jnp.power((5.0 + jnp.asarray(length, jnp.float32)) / 6.0, alpha)


def beam_search(module, params: Params, encoder_input_tokens: Array, max_decode_length: int,
                prompt_ids: Optional[Array] = None, num_decodes: int = 4,
                alpha: Array | float = 0.6,
                beam_size: Optional[int] = None) -> tuple[Array, Array]:
  """Beam search; returns (tokens [b, num_decodes, T], scores [b, num_decodes]) best first.

  Scores are length-penalized log-likelihoods (see `length_penalty`); `beam_size` live
  hypotheses are kept (default `num_decodes`, at least `num_decodes`).
  """
  width = beam_size or num_decodes
  if width < num_decodes:
    raise ValueError(f"beam_size {width} is smaller than num_decodes {num_decodes}")
  length = max_decode_length
  encoded, mask = encode(module, params, encoder_input_tokens, prompt_ids)
  batch = encoded.shape[0]
  encoded = jnp.repeat(encoded, width, axis=0)
  mask = jnp.repeat(mask, width, axis=0)
  cache = init_cache(module, params, encoded, mask, length)
  vocab = module.cfg.vocab_size
  is_eos = jnp.arange(vocab) == EOS_ID
  batch_offset = (jnp.arange(batch) * width)[:, None]
  cache_batch_axis = 1 if module.cfg.scan_layers else 0

  def extend(seqs, beam, token, i):
    """Copies hypotheses `beam` [b, m] of `seqs` [b, W, T] and writes `token` at step i."""
    picked = jnp.take_along_axis(seqs, beam[..., None], axis=1)
    return jax.lax.dynamic_update_index_in_dim(picked, token, i, axis=2)

  def cond(state):
    i, _, alive_logp, _, _, fin_score = state
    best_possible = jnp.max(alive_logp, axis=1) / jnp.maximum(length_penalty(i + 1, alpha),
                                                               length_penalty(length, alpha))
    settled = fin_score[:, -1] >= best_possible
    return (i < length) & ~jnp.all(settled)

  def body(state):
    i, alive_seq, alive_logp, cache, fin_seq, fin_score = state
    prev = _previous_tokens(alive_seq, i).reshape(batch * width)
    logits, cache = decode_step(module, params, cache, encoded, mask, prev)
    logp = jax.nn.log_softmax(logits).at[:, PAD_ID].set(NEG_INF).reshape(batch, width, vocab)
    cand = alive_logp[..., None] + logp  # [b, W, V]

    # Finished: every EOS continuation; at the last step every continuation (truncated).
    finishing = is_eos | (i == length - 1)
    fin_cand = jnp.where(finishing, cand, NEG_INF) / length_penalty(i + 1, alpha)
    new_score, flat = jax.lax.top_k(fin_cand.reshape(batch, width * vocab), num_decodes)
    new_seq = extend(alive_seq, flat // vocab, (flat % vocab).astype(jnp.int32), i)
    all_score = jnp.concatenate([fin_score, new_score], axis=1)
    all_seq = jnp.concatenate([fin_seq, new_seq], axis=1)
    fin_score, keep = jax.lax.top_k(all_score, num_decodes)
    fin_seq = jnp.take_along_axis(all_seq, keep[..., None], axis=1)

    # Alive: the best non-EOS continuations by log-likelihood.
    alive_cand = jnp.where(is_eos, NEG_INF, cand).reshape(batch, width * vocab)
    alive_logp, flat = jax.lax.top_k(alive_cand, width)
    beam = flat // vocab
    alive_seq = extend(alive_seq, beam, (flat % vocab).astype(jnp.int32), i)
    cache = _reorder_cache(cache, (batch_offset + beam).reshape(-1), cache_batch_axis)
    return i + 1, alive_seq, alive_logp, cache, fin_seq, fin_score

  alive_logp = jnp.where(jnp.arange(width) == 0, 0.0, NEG_INF)  # one live hypothesis at first
  state = (jnp.array(0, jnp.int32), jnp.zeros((batch, width, length), jnp.int32),
           jnp.broadcast_to(alive_logp, (batch, width)), cache,
           jnp.zeros((batch, num_decodes, length), jnp.int32),
           jnp.full((batch, num_decodes), NEG_INF, jnp.float32))
  *_, fin_seq, fin_score = jax.lax.while_loop(cond, body, state)
  return fin_seq, fin_score


# ----------------------------------------------------------------------------- scoring


def shift_right(targets: Array) -> Array:
  """Decoder inputs from targets: the start id, then targets[:-1]."""
  return jnp.pad(targets[:, :-1], ((0, 0), (1, 0)), constant_values=DECODER_START_ID)


def score(module, params: Params, batch: Mapping[str, Array]) -> Array:
  """Per-example sum of target log-likelihoods [b], teacher-forced (T5X's `score_batch`)."""
  targets = batch["decoder_target_tokens"]
  inputs = batch.get("decoder_input_tokens")
  if inputs is None:
    inputs = shift_right(targets)
  weights = batch.get("decoder_loss_weights")
  if weights is None:
    weights = targets > 0
  logits = module.apply({"params": params}, batch["encoder_input_tokens"], inputs, targets,
                        batch.get("prompt_ids"), True)
  logp = jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None], axis=-1)[..., 0]
  return jnp.sum(logp * weights.astype(logp.dtype), axis=-1)
