"""Length bucketing of training batches: only padding is cut, and the loss does not change."""
import itertools

import jax
import numpy as np

from prompt_tuning.data import pipeline as inputs
from prompt_tuning.data import quickstart
from prompt_tuning.model import prompted as model_lib
from prompt_tuning.training import step as train_step
from tests import tiny


def _batch(lengths, width):
  tokens = np.zeros((len(lengths), width), np.int32)
  for i, n in enumerate(lengths):
    tokens[i, :n] = np.arange(1, n + 1)
  return {"encoder_input_tokens": tokens, "decoder_target_tokens": np.ones((len(lengths), 3), np.int32)}


def test_trim_picks_the_smallest_bucket_that_fits():
  buckets = (64, 128, 256, 512)
  assert inputs.trim_to_bucket(_batch([70, 3], 512), buckets)["encoder_input_tokens"].shape == (2, 128)
  assert inputs.trim_to_bucket(_batch([64, 1], 512), buckets)["encoder_input_tokens"].shape == (2, 64)
  assert inputs.trim_to_bucket(_batch([500], 512), buckets)["encoder_input_tokens"].shape == (1, 512)
  assert inputs.trim_to_bucket(_batch([20], 24), buckets)["encoder_input_tokens"].shape == (1, 24)
  trimmed = inputs.trim_to_bucket(_batch([70, 3], 512), buckets)
  np.testing.assert_array_equal(trimmed["decoder_target_tokens"], np.ones((2, 3)))


def test_bucketed_training_batches_keep_every_real_token_in_the_same_order():
  name = quickstart.task()
  lengths = {"inputs": 24, "targets": 4}
  plain = inputs.train_batches(name, lengths, 8, seed=0)
  cut = inputs.train_batches(name, lengths, 8, seed=0, length_buckets=(8, 16))
  shapes = set()
  for a, b in itertools.islice(zip(plain, cut), 6):
    width = b["encoder_input_tokens"].shape[1]
    shapes.add(width)
    np.testing.assert_array_equal(a["encoder_input_tokens"][:, :width], b["encoder_input_tokens"])
    assert not a["encoder_input_tokens"][:, width:].any()
    np.testing.assert_array_equal(a["decoder_target_tokens"], b["decoder_target_tokens"])
  assert shapes <= {16, 24} and min(shapes) < 24  # the quickstart's reviews fit 16 tokens mostly


def test_the_loss_of_a_trimmed_batch_equals_the_padded_one():
  module = model_lib.build(tiny.tiny_config(), prompt_length=3)
  prompt, frozen = model_lib.split(tiny.random_params(module))
  batch = tiny.random_batch(batch=4, inputs_len=40, vocab=128)
  batch["encoder_input_tokens"] = batch["encoder_input_tokens"].at[:, 9:].set(0)
  trimmed = inputs.trim_to_bucket({k: np.asarray(v) for k, v in batch.items()}, (16, 32))
  assert trimmed["encoder_input_tokens"].shape[1] == 16
  loss = jax.jit(lambda b: train_step.loss_fn(prompt, frozen, b, None, module=module)[0])
  np.testing.assert_allclose(loss(trimmed), loss(batch), rtol=1e-5)
