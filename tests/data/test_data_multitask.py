"""DPR in T5's `dpr_v001_simple` format and T5's `super_glue_v102_proportional` mixture."""
import pytest
import seqio
import tensorflow as tf

from prompt_tuning.data import multitask
from prompt_tuning.data import preprocessors
from prompt_tuning.data import super_glue
from prompt_tuning.data import vocab

# TFDS-shaped examples -> standard inputs, target.
DPR_GOLDEN = [
    ({"sentence": "Bob asked Tom if he can lend some money.", "pronoun": "he",
      "candidates": ["Bob", "Tom"], "label": 1},
     "wsc: Bob asked Tom if *he* can lend some money.", "Tom"),
    # Only the first occurrence, and one followed by a comma counts.
    ({"sentence": "When Sue met Ann, she smiled, and she left.", "pronoun": "she",
      "candidates": ["Sue", "Ann"], "label": 0},
     "wsc: When Sue met Ann, *she* smiled, and she left.", "Sue"),
    # A period counts; letters before or after do not ("The", "chef", "her" in "there").
    ({"sentence": "Then the chef saw there was nothing for her.", "pronoun": "her",
      "candidates": ["the chef", "the waiter"], "label": 0},
     "wsc: Then the chef saw there was nothing for *her*.", "the chef"),
    # The match is case-sensitive and needs a space before: a sentence-initial pronoun stays.
    ({"sentence": "He called Jim because Jim was ill.", "pronoun": "He",
      "candidates": ["Jim", "Bill"], "label": 1},
     "wsc: He called Jim because Jim was ill.", "Bill"),
    # Followed by an apostrophe (not a space, period or comma): unmarked.
    ({"sentence": "The dog chased the cat until it's tired.", "pronoun": "it",
      "candidates": ["The dog", "the cat"], "label": 0},
     "wsc: The dog chased the cat until it's tired.", "The dog"),
]


def _dpr_fake():
  return {"definite_pronoun_resolution/": [example for example, _, _ in DPR_GOLDEN]}


def test_dpr_golden_format_all_variants(load_task):
  vocabulary = vocab.default_vocabulary()
  inputs = [text for _, text, _ in DPR_GOLDEN]
  targets = [target for _, _, target in DPR_GOLDEN]
  taskless = [text[len("wsc: "):] for text in inputs]
  for name, expected in ((super_glue.DPR, inputs), ("taskless_" + super_glue.DPR, taskless),
                         ("task_index_" + super_glue.DPR, taskless),
                         ("taskless_sentinel_" + super_glue.DPR, taskless)):
    examples = load_task(name, _dpr_fake(), split="train")
    assert [e["inputs_pretokenized"].decode() for e in examples] == expected
    assert [e["targets_pretokenized"].decode() for e in examples] == targets
    ids = list(examples[0]["inputs"])
    if name.startswith("task_index_"):  # WSC's index, as the official prompt-tuning code.
      assert ids[0] == vocab.sentinel_id(super_glue.TASK_INDEX["wsc"])
      ids = ids[1:]
    assert ids == vocabulary.encode(expected[0]) + [1]


def test_dpr_matches_t5s_preprocessor():
  t5_preprocessors = pytest.importorskip("t5.data.preprocessors")
  examples = [example for example, _, _ in DPR_GOLDEN] + [  # And two without a match.
      {"sentence": "They left.", "pronoun": "they", "candidates": ["a", "b"], "label": 1},
      {"sentence": "It is his, and his only.", "pronoun": "his", "candidates": ["c", "d"],
       "label": 0}]
  for example in examples:
    dataset = tf.data.Dataset.from_tensors({k: tf.constant(v) for k, v in example.items()})
    [ours] = list(preprocessors.dpr_text(dataset).as_numpy_iterator())
    [theirs] = list(t5_preprocessors.definite_pronoun_resolution_simple(dataset)
                    .as_numpy_iterator())
    assert (ours["inputs"], ours["targets"]) == (theirs["inputs"], theirs["targets"])


def test_dpr_pronoun_is_matched_literally(load_task):
  # As a regular expression, "it." would match "its" first.
  example = {"sentence": "I saw its tail and it. Then it ended.", "pronoun": "it.",
             "candidates": ["a", "b"], "label": 0}
  [out] = load_task(super_glue.DPR, {"definite_pronoun_resolution/": [example]}, split="test")
  assert out["inputs_pretokenized"] == b"wsc: I saw its tail and *it.* Then it ended."


def test_dpr_accuracy_is_exact_match_of_the_referent(load_task):
  examples = load_task(super_glue.DPR, _dpr_fake(), split="test")
  task = seqio.get_mixture_or_task(super_glue.DPR)
  targets = [task.postprocess_fn(e["targets_pretokenized"], example=e, is_target=True)
             for e in examples]
  predictions = [task.postprocess_fn(p) for p in ("Tom", "sue", "the chef", "Bill", "dog")]
  assert [m(targets, predictions) for m in task.predict_metric_fns] == [{"accuracy": 60.0}]
  assert task.splits == ("train", "test")


# T5's SUPER_GLUE_WEIGHT_MAPPING for its super_glue_v102_proportional (t5/data/glue_utils.py),
# with T5's two WSC tasks (simple_train 259, simple_eval 0) as the one WSC task here.
T5_WEIGHTS = {
    "dpr_v001_simple": 1_322., "super_glue_wsc_v102": 259., "super_glue_boolq_v102": 9_427.,
    "super_glue_cb_v102": 250., "super_glue_copa_v102": 400., "super_glue_multirc_v102": 27_243.,
    "super_glue_record_v102": 138_854., "super_glue_rte_v102": 2_490.,
    "super_glue_wic_v102": 5_428., "super_glue_axb_v102": 0., "super_glue_axg_v102": 0.,
}


def test_mixture_has_t5s_members_and_weights():
  mixture = seqio.get_mixture_or_task("super_glue_v102_proportional")
  assert {t.name: mixture.get_rate(t) for t in mixture.tasks} == T5_WEIGHTS


def test_mixture_trains_on_the_standard_tasks_and_evaluates_each_with_its_own_metrics():
  mixture = seqio.get_mixture_or_task("super_glue_v102_proportional")
  train = sorted(t.name for t in mixture.tasks if "train" in t.splits and mixture.get_rate(t))
  assert train == sorted(n for n, w in T5_WEIGHTS.items() if w)
  validation = [t for t in mixture.tasks if "validation" in t.splits]
  assert sorted(t.name for t in validation) == sorted(
      super_glue.base_name(name) for name in ("boolq", "cb", "copa", "multirc", "record", "rte",
                                              "wic", "wsc"))
  for task in validation:  # The registered task itself: its postprocessor and metrics.
    assert task is seqio.get_mixture_or_task(task.name) and task.predict_metric_fns
  record = seqio.get_mixture_or_task(super_glue.base_name("record"))
  assert [f.__name__ for f in record.predict_metric_fns] == ["record_em_f1"]


class _CountedTask:
  """What seqio's rate function reads from an uncached task."""
  cache_dir = None

  def __init__(self, count):
    self.name, self.count = "counted", count

  def num_input_examples(self, split):
    assert split == "train"
    return self.count


@pytest.mark.parametrize("count,maximum,scale,temperature", [
    (138_854, None, 1.0, 1.0), (138_854, 2 ** 19, 1.0, 1.0), (138_854, 65_536, 1.0, 1.0),
    (100, 250, 3.0, 1.0), (40_000, 10_000, 1.0, 2.0), (27_243, 0, 1.0, 1.0),
    (5_428, None, 0.5, 3.0), (0, None, 1.0, 1.0)])
def test_rate_num_examples_is_seqios(count, maximum, scale, temperature):
  ours = multitask.rate_num_examples(count, maximum, scale, temperature)
  theirs = seqio.mixing_rate_num_examples(_CountedTask(count), maximum=maximum, scale=scale,
                                          temperature=temperature)
  assert ours == pytest.approx(theirs, rel=1e-12)


def test_rate_num_examples_caps_after_scaling_and_before_temperature():
  assert multitask.rate_num_examples(138_854) == 138_854  # T5's default: no cap.
  assert multitask.rate_num_examples(138_854, maximum=65_536) == 65_536
  assert multitask.rate_num_examples(100, maximum=250, scale=3.0) == 250
  assert multitask.rate_num_examples(40_000, maximum=10_000, temperature=2.0) == 100
  assert multitask.rate_num_examples(27_243, maximum=0) == 27_243  # 0 means no cap, as seqio.
