"""Metrics, postprocessors and rank classification against hand-computed values."""
import math

import pytest

from prompt_tuning.data import metrics
from prompt_tuning.data import postprocessors
from prompt_tuning.data import rank_classification


def test_accuracy_counts_invalid_as_wrong():
  assert metrics.accuracy([0, 1, 1, 0], [0, 1, -1, 1]) == {"accuracy": 50.0}


def test_binary_f1_turns_invalid_into_errors():
  # [1, -1, 1, 0] -> [1, 0, 1, 0]: TP 1, FP 1, FN 1 -> F1 = 2/4.
  assert metrics.f1_with_invalid([1, 1, 0, 0], [1, -1, 1, 0]) == {"f1": 50.0}


def test_cb_macro_f1():
  # Per class F1: 1.0, 0.0, 2*1/(2+2)=0.5 -> mean 0.5.
  assert metrics.macro_f1(3)([0, 1, 2, 2], [0, 2, 2, -1]) == {"mean_3class_f1": 50.0}


def test_matthews_corrcoef():
  # TP 1, TN 2, FP 0, FN 1 -> 2 / sqrt(1*2*2*3).
  result = metrics.matthews_corrcoef([1, 1, 0, 0], [1, 0, 0, 0])
  assert result["matthews_corrcoef"] == pytest.approx(100 * 2 / math.sqrt(12))


def test_pearson_and_spearman():
  assert metrics.pearson_and_spearman([1, 2, 3, 4], [2, 4, 6, 8]) == {
      "pearson_corrcoef": pytest.approx(100.0), "spearman_corrcoef": pytest.approx(100.0)}
  # Ranks [1, 3, 2, 4]: 1 - 6 * 2 / (4 * 15) = 0.8.
  result = metrics.pearson_and_spearman([1, 2, 3, 4], [1, 3, 2, 4])
  assert result["spearman_corrcoef"] == pytest.approx(80.0)


def test_multirc_f1a_and_exact_match():
  targets = [{"value": 1, "group": "q1"}, {"value": 0, "group": "q1"},
             {"value": 1, "group": "q2"}, {"value": 1, "group": "q2"}]
  predictions = [{"value": v} for v in (1, 0, 1, -1)]
  # F1a over [1,0,1,0] vs [1,0,1,1]: TP 2, predicted 2, actual 3 -> 0.8. EM: q1 only.
  assert metrics.multirc_f1a(targets, predictions) == {"f1a": pytest.approx(80.0)}
  assert metrics.multirc_exact_match(targets, predictions) == {"exact_match": 50.0}


def test_squad_max_over_answers():
  targets = [["Denver Broncos", "Broncos"], ["Carolina Panthers"]]
  # "the Broncos" -> "broncos": exact. "Panthers team" vs "carolina panthers": F1 0.5.
  assert metrics.squad_em_f1(targets, ["the Broncos", "Panthers team"]) == {
      "em": 50.0, "f1": 75.0}
  assert metrics.squad_f1(targets, ["the Broncos", "Panthers team"]) == {"f1": 75.0}


def test_record_deduplicates_per_query():
  group_a = {"value": ["France", "French Republic"], "group": (0, 0)}
  group_b = {"value": ["Paris"], "group": (0, 1)}
  predictions = [{"value": "France"}, {"value": "France"}, {"value": "London"}]
  # Two queries, one right: 50, not 2/3.
  assert metrics.record_em_f1([group_a, group_a, group_b], predictions) == {
      "em": 50.0, "f1": 50.0}


def test_normalize_answer():
  assert metrics.normalize_answer("  The  Eiffel-Tower, an icon! ") == "eiffeltower icon"


TABLE_3 = {  # The paper's Table 3, columns Average / Best / Ensemble.
    "average": {"boolq": [91.1], "cb": [99.3, 99.0], "copa": [98.8], "multirc": [65.7, 88.7],
                "record": [92.7, 93.4], "rte": [92.6], "wic": [76.2], "wsc": [95.8]},
    "best": {"boolq": [91.3], "cb": [100.0, 100.0], "copa": [100.0], "multirc": [66.3, 89.0],
             "record": [92.9, 93.5], "rte": [93.5], "wic": [76.6], "wsc": [96.2]},
    "ensemble": {"boolq": [91.7], "cb": [100.0, 100.0], "copa": [100.0],
                 "multirc": [67.1, 89.4], "record": [93.2, 93.9], "rte": [93.5],
                 "wic": [77.4], "wsc": [96.2]},
}


@pytest.mark.parametrize("column,expected", [("average", 90.49), ("best", 91.06),
                                             ("ensemble", 91.33)])
def test_super_glue_score_reproduces_table_3(column, expected):
  task_metrics = {f"taskless_super_glue_{task}_v102": dict(enumerate(values))
                  for task, values in TABLE_3[column].items()}
  assert metrics.super_glue_score(task_metrics) == pytest.approx(expected, abs=0.005)
  if column == "average":
    assert round(metrics.super_glue_score(task_metrics), 1) == 90.5


def test_super_glue_score_needs_every_task():
  with pytest.raises(ValueError, match="missing"):
    metrics.super_glue_score({"boolq": {"accuracy": 90.0}})


def test_sentinel_variant_scores_predictions_without_the_sentinel():
  import seqio

  import prompt_tuning.data  # noqa: F401  registers the tasks
  sentinel = seqio.get_mixture_or_task("taskless_sentinel_super_glue_rte_v102").postprocess_fn
  plain = seqio.get_mixture_or_task("taskless_super_glue_rte_v102").postprocess_fn
  assert sentinel("<extra_id_0> not_entailment") == 1 and sentinel(b"<extra_id_0>entailment") == 0
  assert sentinel("entailment") == 0 and sentinel("<extra_id_0>") == -1
  assert sentinel(b"not_entailment", is_target=True) == 1
  assert plain("<extra_id_0> entailment") == -1  # only the sentinel variant strips it


def test_label_index_postprocessor():
  to_index = postprocessors.label_index(("entailment", "not_entailment"))
  assert [to_index(s) for s in ("entailment", b"not_entailment", "maybe", "")] == [0, 1, -1, -1]


def test_transfer_postprocessor_maps_labels():
  to_index = postprocessors.mapped_label_index(
      ("not_equivalent", "equivalent"), {"duplicate": "equivalent",
                                         "not_duplicate": "not_equivalent"})
  assert to_index("duplicate") == 1 and to_index("not_duplicate") == 0
  assert to_index("equivalent") == 1  # Already in the target's labels.
  assert to_index("equivalent", is_target=True) == 1
  assert to_index("duplicate", is_target=True) == -1  # Targets are not mapped.


@pytest.mark.parametrize("prediction,referent,expected", [
    ("The councilmen", "the city councilmen", 1),  # Subset, determiners ignored.
    ("fuzzy bunny", "bunny", 1),  # Superset.
    ("demonstrators", "the city councilmen", 0),
    ("Bob", "Bob's hat", 0),  # Possessive on one side only.
    ("", "Bob", -1),  # Empty never matches.
])
def test_wsc_fuzzy_referent_match(prediction, referent, expected):
  example = {"targets_pretokenized": referent.encode(), "label": 1}
  assert postprocessors.wsc(prediction, example=example) == expected
  assert postprocessors.wsc(referent, example=example, is_target=True) == 1


def test_string_to_float():
  assert postprocessors.string_to_float("3.8") == 3.8
  assert postprocessors.string_to_float("three") == -1.0


def test_rank_classification_predictions():
  predicted = rank_classification.rank_classification_predictions(
      scores=[-1.0, -0.5, -3.0, -4.0, -2.0], example_ids=[7, 7, 9, 9, 9],
      label_ids=[0, 1, 0, 1, 2])
  assert predicted == {7: 1, 9: 2}


def test_rank_classification_sums_token_scores_and_checks_lengths():
  predicted = rank_classification.rank_classification_predictions(
      [[-1.0, -1.0], [-0.5, -2.0]], ["a", "a"], [0, 1])
  assert predicted == {"a": 0}
  with pytest.raises(ValueError, match="differ in length"):
    rank_classification.rank_classification_predictions([0.0], [1, 2], [0, 1])


def test_ranked_metric_unlabelled_examples_are_wrong():
  targets = [{"id": 0, "label": 0, "correct": False}, {"id": 0, "label": 1, "correct": False}]
  assert rank_classification.ranked(metrics.accuracy)(targets, [0.0, -1.0]) == {
      "accuracy": 0.0}
