"""Prompt ensembling: the vote, the prompt table, and Table 3's columns from per-prompt outputs."""
import types

import numpy as np
import pytest

from prompt_tuning.runs import ensemble
from prompt_tuning.runs import evaluator as evaluation


def test_vote_takes_the_majority_and_breaks_ties_by_prompt_order():
  assert ensemble.vote(["b", "a", "b"]) == "b"
  assert ensemble.vote(["a", "b", "b", "a", "c"]) == "a"  # 2-2 tie: prompt 0's answer
  assert ensemble.vote(["c", "b", "a"]) == "c"


def test_prompt_table_stacks_prompts_in_order():
  prompts = [{"prompt": {"prompt": np.full((2, 3), i, np.float32)}} for i in range(4)]
  table = ensemble.prompt_table(prompts)["prompt"]["prompt"]
  assert table.shape == (4, 2, 3) and [float(t[0, 0]) for t in table] == [0, 1, 2, 3]


class _Evaluator:
  """The parts of `evaluation.Evaluator` that `ensemble.evaluate` uses, with fixed outputs."""

  def __init__(self, outputs, targets, ranked=False):
    self.module = types.SimpleNamespace(num_prompts=len(outputs[0]))
    task = types.SimpleNamespace(name="t", output_features={"targets": types.SimpleNamespace(vocabulary=None)})
    self.tasks = [evaluation.TaskData(task, [{"targets": t} for t in targets], ranked, 0.0)]
    self._outputs = outputs

  def outputs_with_prompts(self, params, examples, prompt_ids, ranked, vocabulary):
    k = self.module.num_prompts
    assert len(examples) == len(prompt_ids) == k * len(self._outputs)
    assert list(prompt_ids) == list(range(k)) * len(self._outputs)  # every prompt, per example
    return [x for per_example in self._outputs for x in per_example]

  def task_metrics(self, data, predictions):
    if data.is_ranked:  # scores: right when above zero
      return {"accuracy": 100.0 * float(np.mean([p > 0 for p in predictions]))}
    right = [p == e["targets"] for p, e in zip(predictions, data.examples)]
    return {"accuracy": 100.0 * float(np.mean(right))}


def test_columns_of_table_3_from_per_prompt_outputs():
  targets = ["yes", "no", "yes", "no"]
  outputs = [["no", "yes", "yes"],   # per example: prompts 0, 1, 2; each prompt errs elsewhere
             ["no", "yes", "no"],
             ["yes", "yes", "no"],
             ["no", "no", "yes"]]
  metrics, rows = ensemble.evaluate(_Evaluator(outputs, targets), {"prompt": {}}, {})
  alone = [metrics[f"prompt_{i}/t/accuracy"] for i in range(3)]
  assert alone == [75.0, 75.0, 50.0]
  assert metrics["average/t/accuracy"] == pytest.approx(200 / 3) and metrics["best/t/accuracy"] == 75.0
  assert metrics["ensemble/t/accuracy"] == 100.0
  assert [r["output"] for r in rows["t"]] == targets
  assert rows["t"][0]["outputs"] == ["no", "yes", "yes"]
  assert metrics["ensemble/score"] == 100.0 and metrics["best/score"] == 75.0

def test_best_is_the_single_best_prompt_and_scores_are_averaged_for_ranked_tasks():
  outputs = [[1.0, -3.0], [-1.0, 2.0], [2.0, 0.5]]  # log-likelihood margins per prompt
  metrics, rows = ensemble.evaluate(_Evaluator(outputs, [None] * 3, ranked=True), {"prompt": {}}, {})
  assert metrics["prompt_0/t/accuracy"] == pytest.approx(200 / 3)
  assert metrics["prompt_1/t/accuracy"] == pytest.approx(200 / 3)
  assert metrics["best/t/accuracy"] == pytest.approx(200 / 3)
  assert [r["output"] for r in rows["t"]] == [-1.0, 0.5, 1.25]
  assert metrics["ensemble/t/accuracy"] == pytest.approx(200 / 3)
