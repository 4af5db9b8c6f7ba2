"""Prompt initializers (the paper's), placements, and per-example prompt tables."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import sentencepiece as spm

from prompt_tuning.checkpoints import prompt_io
from prompt_tuning.model import prompted as model_lib
from prompt_tuning.model import prompts
from tests import tiny

TESTDATA = os.path.join(os.path.dirname(__file__), "testdata")
RNG = jax.random.PRNGKey(0)


@pytest.fixture(scope="module")
def embedding():
  return np.random.RandomState(0).randn(32128, 8).astype(np.float32)


def test_random_uniform_paper_is_symmetric_official_is_nonnegative():
  sym = np.asarray(prompts.random_uniform(0.5)(RNG, (100, 64)))
  assert sym.min() >= -0.5 and sym.max() <= 0.5 and sym.min() < -0.45 and sym.max() > 0.45
  off = np.asarray(prompts.random_uniform(0.5, symmetric=False)(RNG, (100, 64)))
  assert off.min() >= 0.0 and off.max() < 0.5


def test_sampled_vocab_draws_distinct_rows_from_the_first_n_ids(embedding):
  out = np.asarray(prompts.sampled_vocab(5000)(RNG, (100, 8), embedding))
  ids = [int(np.argmin(np.abs(embedding - row).sum(1))) for row in out]
  assert all(i < 5000 for i in ids) and len(set(ids)) == 100
  np.testing.assert_array_equal(out, embedding[ids])


def test_sampled_vocab_falls_back_to_replacement_when_prompt_exceeds_population(embedding):
  out = np.asarray(prompts.sampled_vocab(10)(RNG, (20, 8), embedding))
  ids = {int(np.argmin(np.abs(embedding - row).sum(1))) for row in out}
  assert ids <= set(range(10))


def test_class_labels_average_subtokens_with_the_real_t5_vocab(embedding):
  sp = spm.SentencePieceProcessor(model_file=prompts.default_vocab_path())
  assert sp.get_piece_size() == 32000
  labels = ["entailment", "not_entailment"]
  out = np.asarray(prompts.class_labels(labels)(RNG, (6, 8), embedding))
  for row, label in zip(out, labels):
    ids = sp.encode(label)
    np.testing.assert_allclose(row, embedding[ids].mean(0), rtol=1e-6)
  assert len(sp.encode("not_entailment")) > 1  # the average really spans several pieces
  rest = [int(np.argmin(np.abs(embedding - row).sum(1))) for row in out[2:]]
  np.testing.assert_array_equal(out[2:], embedding[rest])  # filled from sampled vocab
  assert all(i < 5000 for i in rest)


def test_from_string_embeds_each_token(embedding):
  sp = spm.SentencePieceProcessor(model_file=prompts.default_vocab_path())
  ids = sp.encode("Is this sentence positive?")
  out = np.asarray(prompts.from_string("Is this sentence positive?",
                                       fallback=prompts.random_uniform())(RNG, (20, 8), embedding))
  np.testing.assert_array_equal(out[:len(ids)], embedding[ids])


def test_from_npy_loads_a_released_prompt_and_checks_its_shape():
  path = os.path.join(TESTDATA, "rte_t5_1_1_lm100k_base.npy")
  out = np.asarray(prompt_io.from_npy(path)(RNG, (100, 768)))
  np.testing.assert_array_equal(out, np.load(path))
  with pytest.raises(ValueError, match=r"shape \(100, 768\).*expects \(20, 768\)"):
    prompt_io.from_npy(path)(RNG, (20, 768))
  with pytest.raises(FileNotFoundError, match="does not exist"):
    prompt_io.from_npy(os.path.join(TESTDATA, "missing.npy"))(RNG, (20, 768))


def test_embedding_initializers_need_the_backbone():
  with pytest.raises(ValueError, match="frozen embedding table"):
    prompts.sampled_vocab()(RNG, (5, 8), None)


def _toy():
  emb = jnp.arange(2 * 5, dtype=jnp.float32).reshape(2, 5, 1) + 1  # tokens 1..10
  mask = jnp.asarray([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
  prompt = -jnp.ones((2, 1))
  prompt = prompt.at[1].set(-2.0)
  return prompt, emb, mask


@pytest.mark.parametrize("placement,row0,mask0", [
    ("prefix", [-1, -2, 1, 2, 3, 4, 5], [1, 1, 1, 1, 1, 0, 0]),
    ("after_bos", [1, -1, -2, 2, 3, 4, 5], [1, 1, 1, 1, 1, 0, 0]),
    ("suffix", [1, 2, 3, -1, -2, 4, 5], [1, 1, 1, 1, 1, 0, 0]),
    ("suffix_before_eos", [1, 2, -1, -2, 3, 4, 5], [1, 1, 1, 1, 1, 0, 0]),
])
def test_placements(placement, row0, mask0):
  prompt, emb, mask = _toy()
  x, m = prompts.combine(prompt, emb, mask, placement)
  np.testing.assert_array_equal(np.asarray(x[0, :, 0]), row0)
  np.testing.assert_array_equal(np.asarray(m[0]), mask0)
  assert bool(m[1].all())  # a full row keeps all of its tokens plus the prompt
  assert sorted(np.asarray(x[1, :, 0]).tolist()) == [-2, -1, 6, 7, 8, 9, 10]


@pytest.mark.parametrize("length", [1, 5, 20, 100, 150])
def test_prompt_lengths_all_work(length):
  cfg = tiny.tiny_config()
  module = model_lib.build(cfg, prompt_length=length)
  params = tiny.random_params(module)
  prompt, frozen = model_lib.split(params)
  prompt = model_lib.init_prompt(module, prompts.sampled_vocab(), RNG, frozen)
  assert prompt["prompt"]["prompt"].shape == (length, cfg.emb_dim)
  logits = tiny.apply(module, model_lib.merge(prompt, frozen), tiny.random_batch())
  assert logits.shape == (4, 5, cfg.vocab_size) and bool(jnp.isfinite(logits).all())


def test_prompt_changes_the_output_and_decoder_targets_are_unprompted():
  cfg = tiny.tiny_config()
  module = model_lib.build(cfg, prompt_length=4)
  params = tiny.random_params(module)
  batch = tiny.random_batch()
  a = tiny.apply(module, params, batch)
  params2 = {**params, "prompt": {"prompt": params["prompt"]["prompt"] + 1.0}}
  b = tiny.apply(module, params2, batch)
  assert a.shape == b.shape == (4, 5, cfg.vocab_size)  # targets keep their length: no decoder prompt
  assert not np.allclose(a, b)


def test_a_prompt_table_serves_mixed_tasks_in_one_batch():
  cfg = tiny.tiny_config()
  table_model = model_lib.build(cfg, prompt_length=3, num_prompts=2)
  single = model_lib.build(cfg, prompt_length=3)
  params = tiny.random_params(table_model)
  assert params["prompt"]["prompt"].shape == (2, 3, cfg.emb_dim)
  batch = tiny.random_batch()
  mixed = tiny.apply(table_model, params, {**batch, "prompt_ids": jnp.asarray([0, 1, 1, 0])})
  for task in (0, 1):
    own = tiny.apply(single, {**params, "prompt": {"prompt": params["prompt"]["prompt"][task]}}, batch)
    rows = np.asarray([0, 1, 1, 0]) == task
    np.testing.assert_allclose(np.asarray(mixed)[rows], np.asarray(own)[rows], atol=1e-5)
