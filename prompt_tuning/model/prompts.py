"""The soft prompt: its Flax module, the paper's initializers, and where it goes in the input.

Initializers are plain functions `(rng, shape, embedding) -> float32 array`: several of the
paper's initializers read the frozen embedding table, which only exists once the backbone is
restored, so the prompt is initialized after the backbone rather than inside `model.init`.
"""
from __future__ import annotations

import functools
import logging
import os
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from prompt_tuning.config import checks

Array = jax.Array
Initializer = Callable[[Array, tuple[int, ...], Optional[np.ndarray]], Array]

PLACEMENTS = ("prefix", "after_bos", "suffix", "suffix_before_eos")
DEFAULT_POPULATION = 5000  # the paper samples from the 5,000 most frequent SentencePiece ids


def default_vocab_path() -> str:
  """The T5 / T5 1.1 SentencePiece model shipped with the package."""
  return os.path.join(os.path.dirname(os.path.dirname(__file__)), "assets", "sentencepiece.model")


# ----------------------------------------------------------------------------- initializers


def random_uniform(scale: float = 0.5, symmetric: bool = True) -> Initializer:
  """U[-scale, scale] (the paper) or, with symmetric=False, U[0, scale) (the official code)."""
  checks.check({"random_uniform.scale": scale})
  def init(rng, shape, embedding=None):
    low = -scale if symmetric else 0.0
    return jax.random.uniform(rng, shape, jnp.float32, low, scale)
  return init


def sampled_vocab(population_size: int = DEFAULT_POPULATION) -> Initializer:
  """Rows of the frozen embedding drawn without replacement from the first N ids."""
  checks.check({"sampled_vocab.population_size": population_size})
  def init(rng, shape, embedding=None):
    table = _require_embedding(embedding, "sampled_vocab")
    population = min(population_size, table.shape[0])
    length = shape[-2]
    replace = length > population
    if replace:
      logging.warning("prompt length %d > vocabulary sample %d: sampling with replacement",
                      length, population)
    keys = [rng] if len(shape) == 2 else list(jax.random.split(rng, shape[0]))  # one draw per prompt
    ids = jnp.concatenate([jax.random.choice(k, population, (length,), replace=replace) for k in keys])
    return jnp.asarray(table, jnp.float32)[ids].reshape(shape)
  return init


def class_labels(labels: Sequence[str], vocab_path: Optional[str] = None,
                 fallback: Optional[Initializer] = None) -> Initializer:
  """Each label's sub-token embeddings averaged into one prompt position; the rest from `fallback`."""
  checks.check({"CLASS_LABELS": labels})
  def init(rng, shape, embedding=None):
    table = np.asarray(_require_embedding(embedding, "class_labels"), np.float32)
    rows = [table[encode_text(vocab_path, text)].mean(axis=0) for text in labels]
    return _fill_front(rng, shape, embedding, rows, fallback, what="class labels")
  return init


def from_string(text: str, vocab_path: Optional[str] = None,
                fallback: Optional[Initializer] = None) -> Initializer:
  """The embeddings of a string's tokens, one per position; the rest from `fallback`."""
  checks.check({"PROMPT_INIT_TEXT": text})
  def init(rng, shape, embedding=None):
    table = np.asarray(_require_embedding(embedding, "from_string"), np.float32)
    rows = list(table[encode_text(vocab_path, text)])
    return _fill_front(rng, shape, embedding, rows, fallback, what="string tokens")
  return init


def from_array(array: np.ndarray) -> Initializer:
  """A given prompt (e.g. a released `.npy`), shape-checked against the model."""
  def init(rng, shape, embedding=None):
    value = np.asarray(array, np.float32)
    if value.shape != tuple(shape):
      raise ValueError(f"prompt has shape {value.shape} but the model expects {tuple(shape)} "
                       "(prompt length x d_model): set PROMPT_LENGTH / the model size to match the file")
    return jnp.asarray(value)
  return init


def _require_embedding(embedding, name):
  if embedding is None:
    raise ValueError(f"the {name} prompt initializer needs the frozen embedding table: "
                     "initialize the prompt with the restored backbone's token_embedder/embedding")
  return embedding


@functools.lru_cache(maxsize=4)
def sentencepiece_processor(vocab_path: Optional[str]):
  """The SentencePiece model at `vocab_path` (None: the T5 vocabulary shipped in assets/)."""
  import sentencepiece as spm
  return spm.SentencePieceProcessor(model_file=vocab_path or default_vocab_path())


def encode_text(vocab_path: Optional[str], text: str) -> list[int]:
  """The token ids of `text` (no EOS); an error if there are none."""
  ids = sentencepiece_processor(vocab_path).encode(text)
  if not ids:
    raise ValueError(f"{text!r} encodes to no tokens; use a non-empty label string")
  return ids


def token_count(text: str, vocab_path: Optional[str] = None) -> int:
  """The number of SentencePiece tokens of `text` (e.g. a prompt length that fits a text)."""
  return len(encode_text(vocab_path, text))


def _fill_front(rng, shape, embedding, rows, fallback, what):
  length = shape[-2]
  if len(rows) > length:
    logging.warning("%d %s but prompt length %d: dropping the extra ones", len(rows), what, length)
    rows = rows[:length]
  base = (fallback or sampled_vocab())(rng, shape, embedding)
  front = jnp.asarray(np.stack(rows), jnp.float32)
  return base.at[..., :len(rows), :].set(front)


# ----------------------------------------------------------------------------- module


class Prompt(nn.Module):
  """Holds the only trainable parameter: `prompt` of shape [P, d] (or [T, P, d] for T tasks).

  The placeholder initializer only gives `model.init` a shape; real initial values come from
  `init_prompt` with the frozen embedding table.
  """
  length: int
  features: int
  num_prompts: int = 0  # 0: one shared prompt; T > 0: a table indexed per example

  @nn.compact
  def __call__(self, prompt_ids: Optional[Array] = None) -> Array:
    shape = (self.length, self.features) if self.num_prompts == 0 else (
        self.num_prompts, self.length, self.features)
    axes = ("prompt", "prompt_embed") if self.num_prompts == 0 else ("prompt_tasks", "prompt", "prompt_embed")
    table = self.param("prompt", nn.with_logical_partitioning(random_uniform(), axes), shape, jnp.float32)
    if self.num_prompts and prompt_ids is None:
      raise ValueError("this model holds a table of prompts: pass `prompt_ids` with the batch")
    return table if not self.num_prompts else table[prompt_ids]


def prompt_shape(length: int, features: int, num_prompts: int = 0) -> tuple[int, ...]:
  return (length, features) if num_prompts == 0 else (num_prompts, length, features)


# ----------------------------------------------------------------------------- placement


def combine(prompt: Array, embedded: Array, mask: Array, placement: str = "prefix"):
  """Inserts the prompt into embedded inputs; returns (embedded [b, L+P, d], mask [b, L+P]).

  `prompt` is [P, d] or per example [b, P, d]; `mask` marks real (non-pad) input tokens. Relative
  positions follow from the combined order, so they account for the prompt without extra work.
  """
  b, length, _ = embedded.shape
  if prompt.ndim == 2:
    prompt = jnp.broadcast_to(prompt, (b,) + prompt.shape)
  prompt = prompt.astype(embedded.dtype)
  p = prompt.shape[1]
  ones = jnp.ones((b, p), bool)
  if placement == "prefix":
    return jnp.concatenate([prompt, embedded], 1), jnp.concatenate([ones, mask], 1)
  if placement == "after_bos":
    x = jnp.concatenate([embedded[:, :1], prompt, embedded[:, 1:]], 1)
    return x, jnp.concatenate([mask[:, :1], ones, mask[:, 1:]], 1)
  if placement in ("suffix", "suffix_before_eos"):
    n = mask.sum(axis=1, keepdims=True)  # inputs are right-padded
    if placement == "suffix_before_eos":
      n = jnp.maximum(n - 1, 0)
    j = jnp.arange(length + p)[None, :]
    src = jnp.where(j < n, j, jnp.where(j < n + p, length + j - n, j - p))
    both = jnp.concatenate([embedded, prompt], 1)
    x = jnp.take_along_axis(both, src[..., None], axis=1)
    new_mask = j < mask.sum(axis=1, keepdims=True) + p
    return x, new_mask
  raise ValueError(f"unknown prompt placement {placement!r}; choose one of {', '.join(PLACEMENTS)}")
