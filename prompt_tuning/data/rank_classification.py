"""Rank classification: score every label string, predict the best one.

An alternative to greedy decoding for classification tasks: a decoded output
can be off the label set, a ranked one cannot. The `*_rank_classification`
tasks expand each example into one candidate per label (see
`preprocessors.expand_for_ranking`); the model scores each candidate's target
log-likelihood (T5X `score_batch`); the metrics here regroup the scores per
example, take the argmax and hand the labels to the task's usual metrics.
Pure Python/NumPy.
"""
from typing import Callable, Dict, Hashable, List, Sequence, Tuple

import numpy as np

SUFFIX = "_rank_classification"


def rank_classification_predictions(scores: Sequence[float],
                                    example_ids: Sequence[Hashable],
                                    label_ids: Sequence[int]) -> Dict[Hashable, int]:
  """Maps each example id to the label id of its highest-scoring candidate.

  Ties go to the candidate seen first.
  """
  if not len(scores) == len(example_ids) == len(label_ids):
    raise ValueError(f"scores, example_ids and label_ids differ in length: "
                     f"{len(scores)}, {len(example_ids)}, {len(label_ids)}")
  best: Dict[Hashable, Tuple[float, int]] = {}
  for score, example_id, label_id in zip(scores, example_ids, label_ids):
    score = float(np.asarray(score).sum())  # Accept per-token scores too.
    if example_id not in best or score > best[example_id][0]:
      best[example_id] = (score, int(label_id))
  return {example_id: label_id for example_id, (_, label_id) in best.items()}


def _collapse(targets, scores) -> Tuple[List[int], List[int], List[Hashable]]:
  """Per example, in first-seen order: gold label, predicted label, group."""
  predicted = rank_classification_predictions(
      scores, [t["id"] for t in targets], [t["label"] for t in targets])
  gold, group = {}, {}
  for target in targets:
    gold.setdefault(target["id"], -1)
    if target["correct"]:
      gold[target["id"]] = target["label"]
    group[target["id"]] = target.get("group")
  ids = list(predicted)
  return [gold[i] for i in ids], [predicted[i] for i in ids], [group[i] for i in ids]


def ranked(metric_fn: Callable, grouped: bool = False) -> Callable:
  """Wraps a `(targets, predictions)` label metric as a `(targets, scores)` one.

  `grouped=True` hands MultiRC-style {"value", "group"} dicts to `metric_fn`.
  """

  def rank_metric(targets, scores):
    gold, predicted, groups = _collapse(targets, scores)
    if grouped:
      gold = [{"value": g, "group": k} for g, k in zip(gold, groups)]
      predicted = [{"value": p} for p in predicted]
    return metric_fn(gold, predicted)

  rank_metric.__name__ = f"ranked_{getattr(metric_fn, '__name__', 'metric')}"
  return rank_metric
