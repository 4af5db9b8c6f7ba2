"""Numpy batches from seqio tasks, for the train loop and the evaluator.

Training batches are deterministic given the seed and resumable: the task's dataset is shuffled
with the seed, repeated, converted to the model's features (T5X's EncDecFeatureConverter without
packing, or `prompt_tuning.training.packing`'s packer) and batched; resuming skips the batches
already consumed.
"""
from __future__ import annotations

import collections
import itertools
from typing import Any, Iterator, Mapping, Optional, Sequence

import numpy as np
import seqio
import tensorflow as tf

from prompt_tuning.config.errors import UsageError
from prompt_tuning.data import rank_classification
from prompt_tuning.training import packing

SHUFFLE_BUFFER = 1000  # seqio's default
FEATURES = ("encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens",
            "decoder_loss_weights")


def get_task(name: str):
  """The registered seqio task or mixture `name` (importing the data package registers them)."""
  if not isinstance(name, str) or not name:
    raise UsageError("MIXTURE_OR_TASK_NAME is not set: bind it to a registered task name")
  try:
    return seqio.get_mixture_or_task(name)
  except ValueError:
    known = sorted(seqio.TaskRegistry.names())
    near = [n for n in known if name.split("_")[0] in n][:3]
    hint = f" (similar: {', '.join(near)})" if near else ""
    raise UsageError(f"unknown task or mixture {name!r}{hint}: use a name listed in "
                     "the README (Tasks), or register your own data with "
                     "prompt_tuning.data.local_task") from None


def leaf_tasks(name: str, split: str) -> list:
  """The tasks of `name` (itself, or a mixture's members) that have `split`."""
  task = get_task(name)
  tasks = getattr(task, "tasks", None) or [task]
  return [t for t in tasks if split in t.splits]


def member_ids(name: str) -> dict[str, int]:
  """Task name -> its index among the members of mixture `name` (a task alone: 0), the
  `prompt_ids` that tell a model which task an example is from."""
  task = get_task(name)
  return {t.name: i for i, t in enumerate(getattr(task, "tasks", None) or [task])}


def _with_member_ids(task, feature_lengths: Mapping[str, int], split: str, seed: int):
  """The model features of a mixture's training stream with `prompt_ids`, each example's task
  index among the members: each member shuffled and repeated, then sampled by the rates."""
  members = getattr(task, "tasks", None) or [task]
  datasets, rates = [], []
  for i, member in enumerate(members):
    if split not in member.splits:
      continue
    ds = member.get_dataset(dict(feature_lengths), split=split, shuffle=True, seed=seed + i, num_epochs=None)
    ds = seqio.EncDecFeatureConverter(pack=False)(ds, dict(feature_lengths))
    datasets.append(ds.map(lambda x, i=i: {**{k: x[k] for k in FEATURES},
                                           "prompt_ids": tf.constant(i, tf.int32)}))
    rates.append(task.get_rate(member) if hasattr(task, "get_rate") else 1.0)
  total = sum(rates)
  return tf.data.Dataset.sample_from_datasets(datasets, [r / total for r in rates], seed=seed,
                                              stop_on_empty_dataset=False)


def trim_to_bucket(batch: Mapping[str, np.ndarray], buckets: Sequence[int]) -> dict:
  """Cuts the right padding of `encoder_input_tokens` to the smallest bucket that fits the batch.

  Real SuperGLUE inputs are far shorter than 512 tokens (RTE's median is about 62), so padding
  every batch to the full length mostly computes on padding; a few fixed buckets bound the
  number of compiled shapes. Padding never changes the logits of real tokens, so the loss is the
  same up to float rounding.
  """
  inputs = batch["encoder_input_tokens"]
  longest = int((inputs > 0).sum(axis=1).max()) if inputs.size else 0
  fits = [b for b in sorted(buckets) if b >= longest]
  length = min(fits[0], inputs.shape[1]) if fits else inputs.shape[1]
  return {**batch, "encoder_input_tokens": inputs[:, :length]}


def train_batches(name: str, feature_lengths: Mapping[str, int], batch_size: int, seed: int,
                  split: str = "train", position: int = 0,
                  length_buckets: Optional[Sequence[int]] = None,
                  pack_prompt_length: Optional[int] = None,
                  member_prompt_ids: bool = False) -> Iterator[dict]:
  """Endless shuffled batches of model features; `position` batches are skipped (resume).

  With `length_buckets`, each batch's inputs are cut to the smallest bucket that fits it. With
  `pack_prompt_length` = P, examples are packed (`prompt_tuning.training.packing`) into rows of
  inputs + P encoder slots and `packing.TARGETS_PER_ROW` * targets decoder slots. With
  `member_prompt_ids`, each example's `prompt_ids` is its task's index in the mixture
  (`member_ids`).
  """
  task = get_task(name)
  if split not in task.splits:
    raise UsageError(f"task {name!r} has no {split!r} split (it has {', '.join(task.splits)})")
  if member_prompt_ids:
    ds = _with_member_ids(task, feature_lengths, split, seed)
  else:
    ds = task.get_dataset(dict(feature_lengths), split=split, shuffle=True, seed=seed, num_epochs=None)
    if pack_prompt_length is not None:
      yield from _packed(ds, feature_lengths, batch_size, pack_prompt_length, position)
      return
    ds = seqio.EncDecFeatureConverter(pack=False)(ds, dict(feature_lengths))
  ds = ds.batch(batch_size, drop_remainder=True).skip(position).prefetch(2)
  for batch in ds.as_numpy_iterator():
    batch = {k: np.asarray(batch[k]) for k in FEATURES + ("prompt_ids",) if k in batch}
    yield trim_to_bucket(batch, length_buckets) if length_buckets else batch


def num_candidates(name: str, feature_lengths: Mapping[str, int], split: str = "train") -> int:
  """The label candidates per example of a `*_rank_classification` task; a UsageError for a task
  without candidates."""
  task = get_task(name)
  ds = task.get_dataset(dict(feature_lengths), split=split, shuffle=False, num_epochs=1)
  if "rank_correct" not in ds.element_spec:
    raise UsageError(f"a rank-classification loss trains on label candidates, but {name!r} has none: "
                     f"set MIXTURE_OR_TASK_NAME to its {rank_classification.SUFFIX} twin")
  first = list(ds.take(64).as_numpy_iterator())
  return next((i for i, x in enumerate(first) if x["rank_id"] != first[0]["rank_id"]), len(first))


def ranked_train_batches(name: str, feature_lengths: Mapping[str, int], batch_size: int, seed: int,
                         split: str = "train", position: int = 0) -> Iterator[dict]:
  """Endless shuffled batches of `batch_size` examples of a `*_rank_classification` task, each
  example as its C label candidates in consecutive rows (batch_size * C rows), with
  `rank_correct` [batch_size, C] marking the gold label (`training.rank_loss`); `position`
  batches are skipped (resume). Examples whose gold target is none of the labels are dropped."""
  count = num_candidates(name, feature_lengths, split)
  ds = get_task(name).get_dataset(dict(feature_lengths), split=split, shuffle=False, num_epochs=1)
  keep = ("inputs", "targets", "rank_id", "rank_correct")
  shapes = {"inputs": [feature_lengths["inputs"]], "targets": [feature_lengths["targets"]],
            "rank_id": [], "rank_correct": []}
  groups = ds.map(lambda x: {k: x[k] for k in keep}).padded_batch(count, padded_shapes=shapes)
  groups = groups.filter(lambda g: (tf.reduce_sum(tf.cast(g["rank_correct"], tf.int32)) == 1)
                         & (tf.reduce_min(g["rank_id"]) == tf.reduce_max(g["rank_id"])))
  groups = groups.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True).repeat()
  for batch in groups.batch(batch_size, drop_remainder=True).skip(position).prefetch(2).as_numpy_iterator():
    targets = batch["targets"].reshape(-1, feature_lengths["targets"]).astype(np.int32)
    yield {"encoder_input_tokens": batch["inputs"].reshape(-1, feature_lengths["inputs"]).astype(np.int32),
           "decoder_input_tokens": np.pad(targets[:, :-1], ((0, 0), (1, 0))),
           "decoder_target_tokens": targets,
           "decoder_loss_weights": (targets > 0).astype(np.float32),
           "rank_correct": batch["rank_correct"].astype(np.float32)}


def _packed(ds, feature_lengths: Mapping[str, int], batch_size: int, prompt_length: int,
            position: int) -> Iterator[dict]:
  """Packed batches of `ds`; resuming re-packs the skipped ones (packing is deterministic)."""
  batches = packing.pack(_token_pairs(ds), feature_lengths["inputs"] + prompt_length,
                         packing.TARGETS_PER_ROW * feature_lengths["targets"], prompt_length,
                         batch_size, final=False)
  yield from itertools.islice(batches, position, None)


def _token_pairs(ds, chunk: int = 256) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """(inputs, targets) token ids of each example of `ds`, in order. Read `chunk` examples at a
  time (padded, the padding then dropped): iterating a tf.data pipeline one example at a time
  costs more than packing them."""
  pairs = ds.map(lambda e: {"inputs": e["inputs"], "targets": e["targets"]}).padded_batch(chunk)
  for batch in pairs.prefetch(2).as_numpy_iterator():
    for inputs, targets in zip(batch["inputs"], batch["targets"]):
      yield inputs[inputs > 0], targets[targets > 0]  # id 0 is only ever padding


def _pad(rows: list, length: int) -> np.ndarray:
  out = np.zeros((len(rows), length), np.int32)
  for i, row in enumerate(rows):
    row = np.asarray(row)[:length]
    out[i, :len(row)] = row
  return out


def model_features(examples: list[Mapping[str, Any]], feature_lengths: Mapping[str, int]) -> dict:
  """Tokenized examples -> the model's padded features (what the feature converter makes)."""
  inputs = _pad([e["inputs"] for e in examples], feature_lengths["inputs"])
  targets = _pad([e["targets"] for e in examples], feature_lengths["targets"])
  return {"encoder_input_tokens": inputs,
          "decoder_input_tokens": np.pad(targets[:, :-1], ((0, 0), (1, 0))),
          "decoder_target_tokens": targets,
          "decoder_loss_weights": (targets > 0).astype(np.float32)}


def eval_examples(task, feature_lengths: Mapping[str, int], split: str,
                  max_examples: Optional[int] = None) -> list[dict]:
  """The first `max_examples` preprocessed examples of `split`, in order, as numpy dicts."""
  ds = task.get_dataset(dict(feature_lengths), split=split, shuffle=False, num_epochs=1)
  if max_examples:
    ds = ds.take(max_examples)
  return list(ds.as_numpy_iterator())


def batched(examples: list[dict], feature_lengths: Mapping[str, int], batch_size: int):
  """(features padded to a full batch, number of real rows) for consecutive slices."""
  for start in range(0, len(examples), batch_size):
    chunk = examples[start:start + batch_size]
    features = model_features(chunk, feature_lengths)
    missing = batch_size - len(chunk)
    if missing:
      features = {k: np.pad(v, ((0, missing), (0, 0))) for k, v in features.items()}
    yield features, len(chunk)


def majority_baseline(examples: list[dict]) -> float:
  """Accuracy (%) of always predicting the most frequent target string."""
  counts = collections.Counter(bytes(e.get("targets_pretokenized", b"")) for e in examples)
  return 100.0 * max(counts.values()) / len(examples) if examples else 0.0
