"""Golden formats: exact SuperGLUE input/target strings in every variant."""
import pytest
import seqio

from prompt_tuning.data import super_glue
from prompt_tuning.data import vocab

_WSC_TEXT = ("Mark told Pete many lies about himself, which Pete included in his book. "
             "He should have been more truthful.")

# task -> (TFDS config, example, standard inputs, targets per produced example)
GOLDEN = {
    "boolq": ("boolq", {
        "question": "is the sky blue", "label": 1, "idx": 0,
        "passage": "The sky appears blue because of Rayleigh scattering."},
        "boolq passage: The sky appears blue because of Rayleigh scattering. "
        "question: is the sky blue", ["True"]),
    "cb": ("cb", {
        "premise": "It was raining. She stayed in.", "hypothesis": "She went out.",
        "label": 1, "idx": 0},
        "cb hypothesis: She went out. premise: It was raining. She stayed in.",
        ["contradiction"]),
    "copa": ("copa", {
        "premise": "The man broke his toe.", "question": "cause",
        "choice1": "He dropped a hammer on his foot.", "choice2": "He got a hole in his sock.",
        "label": 0, "idx": 0},
        "copa choice1: He dropped a hammer on his foot. choice2: He got a hole in his sock. "
        "premise: The man broke his toe. question: cause", ["choice1"]),
    "multirc": ("multirc", {
        "paragraph": "<b>Sent 1: </b>Tom has a dog.<br><b>Sent 2: </b>It is brown.<br>",
        "question": "What color is Tom's dog?", "answer": "Brown", "label": 1,
        "idx": {"paragraph": 0, "question": 0, "answer": 0}},
        "multirc question: What color is Tom's dog? answer: Brown "
        "paragraph: Sent 1: Tom has a dog. Sent 2: It is brown. ", ["True"]),
    "record": ("record", {
        "passage": "Paris is in France.\n@highlight\nThe Louvre is big\n@highlight\nIt has art",
        "query": "Paris is the capital of @placeholder.",
        "entities": ["Paris", "France", "Louvre", "French Republic"],
        "answers": ["France", "French Republic"], "idx": {"passage": 0, "query": 0}},
        "record query: Paris is the capital of @placeholder. entities: Paris, France, Louvre, "
        "French Republic passage: Paris is in France. The Louvre is big. It has art",
        ["France", "French Republic"]),
    "rte": ("rte", {
        "premise": "Dana Reeve died of lung cancer.", "hypothesis": "Dana Reeve is dead.",
        "label": 0, "idx": 0},
        "rte hypothesis: Dana Reeve is dead. premise: Dana Reeve died of lung cancer.",
        ["entailment"]),
    "wic": ("wic", {
        "word": "bank", "sentence1": "He sat on the bank of the river.",
        "sentence2": "She works at the bank.", "start1": 16, "end1": 20, "start2": 18,
        "end2": 22, "label": 0, "idx": 0},
        "wic sentence1: He sat on the bank of the river. sentence2: She works at the bank. "
        "word: bank", ["False"]),
    "wsc": ("wsc.fixed", {
        "text": _WSC_TEXT, "span1_index": 0, "span1_text": "Mark", "span2_index": 13,
        "span2_text": "He", "label": 1, "idx": 0},
        "wsc: Mark told Pete many lies about himself, which Pete included in his book. "
        "*He* should have been more truthful.", ["Mark"]),
    "axb": ("axb", {
        "sentence1": "The cat sat on the mat.", "sentence2": "The cat did not sit on the mat.",
        "label": 1, "idx": 0},
        "rte sentence1: The cat sat on the mat. sentence2: The cat did not sit on the mat.",
        ["not_entailment"]),
    "axg": ("axg", {
        "premise": "The nurse notified the patient that her shift would be ending in an hour.",
        "hypothesis": "The nurse's shift would be ending in an hour.", "label": 0, "idx": 0},
        "rte hypothesis: The nurse's shift would be ending in an hour. premise: The nurse "
        "notified the patient that her shift would be ending in an hour.", ["entailment"]),
}


def _fake(task):
  config, example, _, _ = GOLDEN[task]
  return {f"super_glue/{config}": [example]}


def _split(task):
  return "test" if task in ("axb", "axg") else "validation"


@pytest.mark.parametrize("task", sorted(GOLDEN))
def test_golden_format_all_variants(task, load_task):
  _, _, inputs, targets = GOLDEN[task]
  taskless = inputs.split(" ", 1)[1]
  vocabulary = vocab.default_vocabulary()
  base = super_glue.base_name(task)
  for name, expected in ((base, inputs), ("taskless_" + base, taskless),
                         ("task_index_" + base, taskless), ("taskless_sentinel_" + base, taskless)):
    examples = load_task(name, _fake(task), split=_split(task))
    assert [e["inputs_pretokenized"].decode() for e in examples] == [expected] * len(targets)
    assert [e["targets_pretokenized"].decode() for e in examples] == targets
    ids = list(examples[0]["inputs"])
    if name.startswith("task_index_"):
      index = super_glue.TASK_INDEX["rte" if task in ("axb", "axg") else task]
      assert ids[0] == vocab.sentinel_id(index)
      ids = ids[1:]
    assert ids == vocabulary.encode(expected) + [1]  # EOS
    sentinel = [vocab.sentinel_id(0)] if name.startswith("taskless_sentinel_") else []
    assert list(examples[0]["targets"]) == sentinel + vocabulary.encode(targets[0]) + [1]


def test_wsc_trains_on_positive_referents_only(load_task):
  negative = dict(GOLDEN["wsc"][1], span1_index=2, span1_text="Pete", label=0, idx=1)
  fake = {"super_glue/wsc.fixed": [GOLDEN["wsc"][1], negative]}
  assert [e["targets_pretokenized"] for e in load_task("super_glue_wsc_v102", fake, "train")
         ] == [b"Mark"]
  assert [e["targets_pretokenized"] for e in load_task("super_glue_wsc_v102", fake)
         ] == [b"Mark", b"Pete"]


def test_wsc_keeps_punctuation_glued_to_pronoun(load_task):
  example = {"text": 'John laughed. "Good for him," he said.', "span1_index": 0,
             "span1_text": "John", "span2_index": 4, "span2_text": "him", "label": 1, "idx": 0}
  [out] = load_task("taskless_super_glue_wsc_v102", {"super_glue/wsc.fixed": [example]})
  assert out["inputs_pretokenized"] == b'John laughed. "Good for *him*," he said.'


def test_unlabelled_test_examples_get_unk_target(load_task):
  example = dict(GOLDEN["rte"][1], label=-1)
  [out] = load_task("super_glue_rte_v102", {"super_glue/rte": [example]}, split="test")
  assert out["targets_pretokenized"] == b"<unk>"


def _metrics(task_name, examples, predictions=None, scores=None):
  """What seqio's evaluator computes from decoded predictions or scores."""
  task = seqio.get_mixture_or_task(task_name)
  targets = [task.postprocess_fn(e["targets_pretokenized"].decode(), example=e, is_target=True)
             for e in examples]
  if scores is None:
    outputs, metric_fns = [task.postprocess_fn(p, example=e, is_target=False)
                           for p, e in zip(predictions, examples)], task.predict_metric_fns
  else:
    outputs, metric_fns = scores, task.score_metric_fns
  results = {}
  for metric_fn in metric_fns:
    results.update(metric_fn(targets, outputs))
  return results


def test_rank_classification_expands_and_scores(load_task):
  second = dict(GOLDEN["cb"][1], label=2, idx=1)
  examples = load_task("taskless_super_glue_cb_v102_rank_classification",
                       {"super_glue/cb": [GOLDEN["cb"][1], second]})
  assert [e["targets_pretokenized"] for e in examples] == [
      b"entailment", b"contradiction", b"neutral"] * 2
  assert [int(e["rank_id"]) for e in examples] == [0, 0, 0, 1, 1, 1]
  assert [bool(e["rank_correct"]) for e in examples] == [False, True, False, False, False, True]
  # First example ranks `contradiction` best (right), second `entailment` (wrong).
  results = _metrics("taskless_super_glue_cb_v102_rank_classification", examples,
                     scores=[-3.0, -0.5, -2.0, -0.1, -4.0, -1.0])
  assert results["accuracy"] == 50.0
  assert results["mean_3class_f1"] == pytest.approx(100 * (0 + 1 + 0) / 3)


def test_multirc_metrics_group_per_question(load_task):
  ex = GOLDEN["multirc"][1]
  rows = [dict(ex, label=1, idx={"paragraph": 0, "question": 0, "answer": 0}),
          dict(ex, label=0, idx={"paragraph": 0, "question": 0, "answer": 1}),
          dict(ex, label=1, idx={"paragraph": 0, "question": 1, "answer": 2})]
  examples = load_task("taskless_super_glue_multirc_v102", {"super_glue/multirc": rows})
  results = _metrics("taskless_super_glue_multirc_v102", examples, ["True", "False", "maybe"])
  assert results == {"f1a": pytest.approx(100 * 2 / 3), "exact_match": 50.0}
  ranked = load_task("taskless_super_glue_multirc_v102_rank_classification",
                     {"super_glue/multirc": rows})
  # Candidates False/True per answer; ranked choices True, False, False.
  results = _metrics("taskless_super_glue_multirc_v102_rank_classification", ranked,
                     scores=[-2.0, -1.0, -1.0, -2.0, -1.0, -2.0])
  assert results == {"f1a": pytest.approx(100 * 2 / 3), "exact_match": 50.0}


def test_record_and_wsc_metrics_through_the_task(load_task):
  examples = load_task("taskless_super_glue_record_v102", _fake("record"))
  assert _metrics("taskless_super_glue_record_v102", examples,
                  ["french republic", "France"]) == {"em": 100.0, "f1": 100.0}
  examples = load_task("taskless_super_glue_wsc_v102", _fake("wsc"))
  assert _metrics("taskless_super_glue_wsc_v102", examples, ["mark"]) == {
      "accuracy": 100.0}
  assert _metrics("taskless_super_glue_wsc_v102", examples, ["Pete"]) == {
      "accuracy": 0.0}
