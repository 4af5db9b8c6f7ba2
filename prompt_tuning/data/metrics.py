"""Metric functions with seqio's `(targets, predictions)` signature.

Pure Python/NumPy (no TensorFlow), so they can be tested and reused on their
own. Scores are percentages, as in T5 and the paper, and each function gives
the value of its T5 counterpart (`t5.evaluation.metrics`, which computes with
scikit-learn and SciPy; `tests/data/test_data_metrics_t5.py` checks them side
by side). Classification targets and predictions are label indices produced
by the postprocessors; an output outside the label set arrives as -1 and
therefore always counts as wrong.
"""
import collections
import math
import re
import string
from typing import Callable, Dict, Mapping, Sequence

import numpy as np

Metrics = Dict[str, float]


def accuracy(targets, predictions) -> Metrics:
  return {"accuracy": 100.0 * float(np.mean(np.asarray(targets) == np.asarray(predictions)))}


def _f1_for_class(targets: np.ndarray, predictions: np.ndarray, label: int) -> float:
  true_pos = np.sum((predictions == label) & (targets == label))
  predicted = np.sum(predictions == label)
  actual = np.sum(targets == label)
  if predicted + actual == 0:
    return 0.0
  return 2.0 * true_pos / (predicted + actual)


def f1_with_invalid(targets, predictions) -> Metrics:
  """Binary F1 of class 1; an invalid prediction (-1) is made a wrong one."""
  targets, predictions = np.asarray(targets), np.array(predictions)
  invalid = (predictions != 0) & (predictions != 1)
  predictions[invalid] = 1 - targets[invalid]
  return {"f1": 100.0 * _f1_for_class(targets, predictions, 1)}


def macro_f1(num_classes: int) -> Callable[..., Metrics]:
  """Mean over classes of one-vs-rest F1 (CB: 3 classes). -1 is no class."""

  def mean_class_f1(targets, predictions) -> Metrics:
    targets, predictions = np.asarray(targets), np.asarray(predictions)
    scores = [_f1_for_class(targets, predictions, c) for c in range(num_classes)]
    return {f"mean_{num_classes}class_f1": 100.0 * float(np.mean(scores))}

  return mean_class_f1


def _counts(values: np.ndarray, classes: np.ndarray) -> np.ndarray:
  return np.array([np.sum(values == c) for c in classes], dtype=np.float64)


def matthews_corrcoef(targets, predictions) -> Metrics:
  """Matthews correlation over every value seen (CoLA, AX-b), 0 if undefined.

  The K-class form (Gorodkin 2004), as scikit-learn computes it for T5: an
  invalid output (-1) is a class of its own, which no target has, rather
  than the wrong one of the two labels.
  """
  targets, predictions = np.asarray(targets), np.asarray(predictions)
  classes = np.union1d(targets, predictions)
  actual, predicted = _counts(targets, classes), _counts(predictions, classes)
  n = float(len(targets))
  covariance = float(np.sum(targets == predictions)) * n - actual @ predicted
  variances = (n * n - predicted @ predicted) * (n * n - actual @ actual)
  mcc = 0.0 if variances == 0 else covariance / np.sqrt(variances)
  return {"matthews_corrcoef": 100.0 * float(mcc)}


def _ranks(values: np.ndarray) -> np.ndarray:
  """1-based ranks, ties get their average rank (as Spearman needs)."""
  order = np.argsort(values, kind="mergesort")
  ranks = np.empty(len(values))
  ranks[order] = np.arange(1, len(values) + 1)
  for value in np.unique(values):
    tied = values == value
    ranks[tied] = ranks[tied].mean()
  return ranks


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
  """NaN where either side is constant, as SciPy's `pearsonr` gives (and
  where there are fewer than 2 values, which `pearsonr` refuses)."""
  if len(a) < 2 or np.all(a == a[0]) or np.all(b == b[0]):
    return math.nan
  a, b = a - a.mean(), b - b.mean()
  return float(np.clip(np.dot(a / np.linalg.norm(a), b / np.linalg.norm(b)), -1.0, 1.0))


def pearson_and_spearman(targets, predictions) -> Metrics:
  """STS-B's correlations, x100. A constant prediction (e.g. every output
  unreadable, hence -1) has no correlation: NaN, as in T5."""
  targets = np.asarray(targets, dtype=np.float64)
  predictions = np.asarray(predictions, dtype=np.float64)
  if np.isnan(targets).any() or np.isnan(predictions).any():  # An output "nan": NaN, as SciPy.
    return {"pearson_corrcoef": math.nan, "spearman_corrcoef": math.nan}
  return {"pearson_corrcoef": 100.0 * _pearson(targets, predictions),
          "spearman_corrcoef": 100.0 * _pearson(_ranks(targets), _ranks(predictions))}


# --- MultiRC: targets/predictions are {"value": label, "group": question}. ---


def multirc_f1a(targets, predictions) -> Metrics:
  """F1 over all answer options pooled together (F1a)."""
  return {"f1a": f1_with_invalid([t["value"] for t in targets],
                                 [p["value"] for p in predictions])["f1"]}


def multirc_exact_match(targets, predictions) -> Metrics:
  """Share of questions whose answer options are all labelled correctly."""
  per_question = collections.defaultdict(list)
  for target, prediction in zip(targets, predictions):
    per_question[target["group"]].append(target["value"] == prediction["value"])
  return {"exact_match": 100.0 * float(np.mean([all(v) for v in per_question.values()]))}


# --- Extractive QA (SQuAD, MRQA, ReCoRD): max over the gold answers. ---


def normalize_answer(text: str) -> str:
  """SQuAD's normalization: lowercase, no punctuation/articles, one space."""
  text = text.lower()
  text = "".join(ch for ch in text if ch not in set(string.punctuation))
  text = re.sub(r"\b(a|an|the)\b", " ", text)
  return " ".join(text.split())


def _token_f1(gold: str, prediction: str) -> float:
  gold_tokens, predicted_tokens = gold.split(), prediction.split()
  common = collections.Counter(gold_tokens) & collections.Counter(predicted_tokens)
  overlap = sum(common.values())
  if overlap == 0:
    return 0.0
  precision = overlap / len(predicted_tokens)
  recall = overlap / len(gold_tokens)
  return 2 * precision * recall / (precision + recall)


def squad_em_f1(targets: Sequence[Sequence[str]], predictions: Sequence[str]) -> Metrics:
  """EM and token F1 of each prediction against its best gold answer."""
  em, f1 = [], []
  for answers, prediction in zip(targets, predictions):
    answers = [normalize_answer(a) for a in answers] or [""]
    prediction = normalize_answer(prediction)
    em.append(max(float(a == prediction) for a in answers))
    f1.append(max(_token_f1(a, prediction) for a in answers))
  return {"em": 100.0 * float(np.mean(em)), "f1": 100.0 * float(np.mean(f1))}


def squad_f1(targets, predictions) -> Metrics:
  """F1 only: the paper reports no EM for SQuAD/MRQA (Table 1)."""
  return {"f1": squad_em_f1(targets, predictions)["f1"]}


def record_em_f1(targets, predictions) -> Metrics:
  """ReCoRD trains one example per answer; score each query once.

  Targets are {"value": all answers, "group": (passage, query)}, predictions
  {"value": text}. The first example seen for a query stands for it (T5's
  `deduplicate_metric`).
  """
  per_query = {}
  for target, prediction in zip(targets, predictions):
    per_query.setdefault(target["group"], (target["value"], prediction["value"]))
  answers, predicted = zip(*per_query.values()) if per_query else ((), ())
  return squad_em_f1(answers, predicted)


# --- Aggregates. ---

SUPER_GLUE_TASKS = ("boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc")


def super_glue_score(task_metrics: Mapping[str, Mapping[str, float]]) -> float:
  """Mean over the 8 SuperGLUE tasks of each task's mean metric.

  `task_metrics` maps a task ("boolq", ...; any name containing one of them,
  e.g. "taskless_super_glue_cb_v102", works) to its metrics dict.
  """
  per_task = {}
  for name, values in task_metrics.items():
    matches = [t for t in SUPER_GLUE_TASKS if re.search(rf"(^|_){t}(_|$)", name)]
    if len(matches) == 1 and values:
      per_task[matches[0]] = float(np.mean(list(values.values())))
  missing = sorted(set(SUPER_GLUE_TASKS) - set(per_task))
  if missing:
    raise ValueError(f"super_glue_score needs all 8 tasks; missing {missing}")
  return float(np.mean([per_task[t] for t in SUPER_GLUE_TASKS]))
