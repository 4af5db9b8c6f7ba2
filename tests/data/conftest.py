"""Offline helpers: load registered tasks over hand-written TFDS examples."""
import contextlib
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # pylint: disable=g-import-not-at-top
import seqio
import tensorflow as tf
import tensorflow_datasets as tfds

LENGTHS = {"inputs": 512, "targets": 32}


def _spec(value):
  tensor = tf.constant(value)
  return tf.TensorSpec([None] * tensor.shape.rank, tensor.dtype)


def _nested_spec(example):
  return {k: _nested_spec(v) if isinstance(v, dict) else _spec(v) for k, v in example.items()}


@contextlib.contextmanager
def fake_tfds(examples_by_config):
  """TFDS builder `name/config` yields the given examples.

  A key `name/config:split` serves only that TFDS split; `name/config` any.
  """

  def as_dataset(builder, split, *args, **kwargs):
    del args, kwargs
    config = f"{builder.name}/{builder.builder_config.name if builder.builder_config else ''}"
    examples = examples_by_config.get(f"{config}:{split}") or examples_by_config[config]
    return tf.data.Dataset.from_generator(lambda: iter(examples),
                                          output_signature=_nested_spec(examples[0]))

  with tfds.testing.mock_data(as_dataset_fn=as_dataset):
    yield


def load(task_name, examples_by_config, split="validation", lengths=None):
  """The task's preprocessed examples (as numpy) for the fake TFDS data."""
  with fake_tfds(examples_by_config):
    task = seqio.get_mixture_or_task(task_name)
    dataset = task.get_dataset(lengths or LENGTHS, split=split, shuffle=False,
                               try_in_mem_cache=False)
    return list(dataset.as_numpy_iterator())


@pytest.fixture(name="load_task")
def load_task_fixture():
  return load
