"""Which tasks choose the best evaluation: a transfer mixture is selected on the task it trains on
(the paper picks SQuAD-dev checkpoints for Table 1, QQP-dev ones for Table 2), not on its targets."""
import csv

import pytest

from prompt_tuning.config.errors import UsageError
from prompt_tuning.data import local
from prompt_tuning.data import quickstart
from prompt_tuning.data import registry
from prompt_tuning.model import prompted
from prompt_tuning.model import t5
from prompt_tuning.runs import evaluator as evaluator_lib
from prompt_tuning.runs import train_loop
from prompt_tuning.runs.settings import EvaluationConfig

LENGTHS = {"inputs": 24, "targets": 4}


@pytest.fixture(name="mixture", scope="module")
def mixture_fixture(tmp_path_factory):
  """The quickstart task (train + validation) and an evaluation-only copy whose labels are swapped,
  so the two tasks' accuracies differ."""
  trained = quickstart.task()
  swapped = tmp_path_factory.mktemp("swapped") / "validation.tsv"
  with open(f"{quickstart.ASSETS}/validation.tsv", encoding="utf-8") as f:
    rows = list(csv.reader(f, delimiter="\t"))
  flip = {"positive": "negative", "negative": "positive"}
  with open(swapped, "w", encoding="utf-8", newline="") as f:
    csv.writer(f, delimiter="\t").writerows([rows[0]] + [[r[0], flip[r[1]]] for r in rows[1:]])
  target = local.local_task(name="quickstart_swapped", label_classes=list(quickstart.LABELS),
                            paths={"validation": str(swapped)})
  registry.add_mixture("quickstart_transfer", [trained, target])
  return trained, target


def _evaluate(score_tasks, monkeypatch):
  """eval metrics of the mixture when every output is the quickstart task's own target: 100% on
  the trained task, 0% on its label-swapped copy."""
  cfg = t5.T5Config(emb_dim=64, num_heads=4, num_encoder_layers=1, num_decoder_layers=1,
                    head_dim=16, mlp_dim=128, dtype="float32")
  evaluator = evaluator_lib.Evaluator(prompted.build(cfg, prompt_length=4), "quickstart_transfer",
                                      LENGTHS, batch_size=8, max_examples=16, score_tasks=score_tasks)
  answers = [e["targets_pretokenized"].decode() for e in evaluator.tasks[0].examples]
  monkeypatch.setattr(evaluator, "outputs", lambda data, params: (
      {"loss": 0.0, "num_tokens": 1.0, "correct": 0.0}, answers))
  return evaluator.evaluate({}, {})[0]


def test_a_transfer_mixture_is_scored_on_the_task_it_trains_on(mixture, monkeypatch):
  trained, target = mixture
  assert train_loop._score_tasks("quickstart_transfer", EvaluationConfig()) == [trained]
  assert train_loop._score_tasks("quickstart_transfer", EvaluationConfig(score_tasks=[target])) == [target]
  metrics = _evaluate([trained], monkeypatch)
  assert (metrics[f"eval/{trained}/accuracy"], metrics[f"eval/{target}/accuracy"]) == (100.0, 0.0)
  assert metrics[evaluator_lib.SCORE_KEY] == 100.0
  assert _evaluate([target], monkeypatch)[evaluator_lib.SCORE_KEY] == 0.0
  assert _evaluate(None, monkeypatch)[evaluator_lib.SCORE_KEY] == 50.0


def test_a_score_task_the_mixture_does_not_evaluate_is_refused(mixture, monkeypatch):
  with pytest.raises(UsageError, match=r"EVAL_SCORE_TASKS names \['rte'\]"):
    _evaluate(["rte"], monkeypatch)
