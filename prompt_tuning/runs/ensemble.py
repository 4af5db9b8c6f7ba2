"""Prompt ensembling (the paper's §6, Table 3): K prompts on one frozen model, majority vote.

The K prompts become one prompt table; every eval example runs once per prompt, its copies
side by side in the same batches, so one pass over the data serves the whole ensemble. Reported, per task and over all tasks, as
in Table 3: each prompt alone (`prompt_<i>/...`), their `average`, the `best` prompt (the one
with the highest mean of the task's metrics) and the `ensemble`: the majority vote of the K
decoded outputs (ties go to the lowest-numbered prompt), or for scored
(`*_rank_classification`) tasks the mean of the K log-likelihoods.
"""
from __future__ import annotations

import collections
from typing import Sequence

import numpy as np

from prompt_tuning.model import prompted as model_lib


def vote(outputs: Sequence[str]) -> str:
  """The most frequent output; among equally frequent ones, the first in prompt order."""
  return collections.Counter(outputs).most_common(1)[0][0]


def prompt_table(prompts: Sequence[dict]) -> dict:
  """One [K, P, d] prompt table from K prompt subtrees of the same shape."""
  values = [np.asarray(p[model_lib.PROMPT_KEY]["prompt"], np.float32) for p in prompts]
  return {model_lib.PROMPT_KEY: {"prompt": np.stack(values)}}


def _mean_score(values: dict) -> float:
  return float(np.mean(list(values.values()))) if values else -np.inf


def evaluate(evaluator, table: dict, frozen) -> tuple[dict, dict]:
  """(metrics, per-task rows) of the K prompts of `table`; `evaluator` holds the K-prompt model."""
  k = evaluator.module.num_prompts
  params = model_lib.merge(table, frozen)
  metrics, rows, columns = {}, {}, {"average": [], "best": [], "ensemble": []}
  for data in evaluator.tasks:
    every = [e for e in data.examples for _ in range(k)]  # each example once per prompt
    flat = evaluator.outputs_with_prompts(params, every, list(range(k)) * len(data.examples),
                                          data.is_ranked, data.task.output_features["targets"].vocabulary)
    outputs = [flat[i:i + k] for i in range(0, len(flat), k)]
    name = data.task.name
    alone = [evaluator.task_metrics(data, [o[i] for o in outputs]) for i in range(k)]
    combined = [float(np.mean(o)) if data.is_ranked else vote(o) for o in outputs]
    values = {"average": {m: float(np.mean([a[m] for a in alone])) for m in alone[0]},
              "best": max(alone, key=_mean_score),
              "ensemble": evaluator.task_metrics(data, combined)}
    for i, a in enumerate(alone):
      metrics.update({f"prompt_{i}/{name}/{m}": v for m, v in a.items()})
    for column, v in values.items():
      metrics.update({f"{column}/{name}/{m}": x for m, x in v.items()})
      columns[column] += list(v.values())
    rows[name] = [{"outputs": [_plain(x) for x in o], "output": _plain(c)}
                  for o, c in zip(outputs, combined)]
  for column, scores in columns.items():
    if scores:
      metrics[f"{column}/score"] = float(np.mean(scores))
  return metrics, rows


def _plain(value):
  return value if isinstance(value, str) else float(value)
