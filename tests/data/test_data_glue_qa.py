"""Golden formats for GLUE, QQP<->MRPC transfer and SQuAD -> MRQA."""
import pytest
import seqio

from prompt_tuning.data import glue
from prompt_tuning.data import qa

# task -> (example, standard inputs, target)
GLUE_GOLDEN = {
    "cola": ({"sentence": "The book was read by me.", "label": 1, "idx": 0},
             "cola sentence: The book was read by me.", "acceptable"),
    "sst2": ({"sentence": "a gorgeous , witty film", "label": 1, "idx": 0},
             "sst2 sentence: a gorgeous , witty film", "positive"),
    "mrpc": ({"sentence1": "He said hello.", "sentence2": "Hello, he said.", "label": 1, "idx": 0},
             "mrpc sentence1: He said hello. sentence2: Hello, he said.", "equivalent"),
    "qqp": ({"question1": "How do I learn Go?", "question2": "What is Go?", "label": 0, "idx": 0},
            "qqp question1: How do I learn Go? question2: What is Go?", "not_duplicate"),
    "mnli": ({"premise": "A man plays guitar.", "hypothesis": "A man is on stage.", "label": 1,
              "idx": 0},
             "mnli hypothesis: A man is on stage. premise: A man plays guitar.", "neutral"),
    "qnli": ({"question": "Where is Paris?", "sentence": "Paris is in France.", "label": 0,
              "idx": 0},
             "qnli question: Where is Paris? sentence: Paris is in France.", "entailment"),
    "rte": ({"sentence1": "It rained.", "sentence2": "It was dry.", "label": 1, "idx": 0},
            "rte sentence1: It rained. sentence2: It was dry.", "not_entailment"),
    "wnli": ({"sentence1": "I put the cake in the box because it was small.",
              "sentence2": "The box was small.", "label": 0, "idx": 0},
             "wnli sentence1: I put the cake in the box because it was small. "
             "sentence2: The box was small.", "not_entailment"),
    "stsb": ({"sentence1": "A dog runs.", "sentence2": "A dog is running.", "label": 4.32,
              "idx": 0},
             "stsb sentence1: A dog runs. sentence2: A dog is running.", "4.4"),
}


@pytest.mark.parametrize("task", sorted(GLUE_GOLDEN))
def test_glue_golden_format_all_variants(task, load_task):
  example, inputs, target = GLUE_GOLDEN[task]
  taskless = inputs.split(" ", 1)[1]
  base = glue.base_name(task)
  # The task-index variant's text is the taskless one; the taskless pipeline
  # is that minus the sentinel (checked for every SuperGLUE task), so two
  # loads cover the three formats.
  for name, expected in ((base, inputs), ("task_index_" + base, taskless)):
    [out] = load_task(name, {f"glue/{task}": [example]})
    assert out["inputs_pretokenized"].decode() == expected
    assert out["targets_pretokenized"].decode() == target
  assert seqio.get_mixture_or_task("taskless_" + base).name == "taskless_" + base


def test_mnli_validation_is_matched_and_both_are_named(load_task):
  example, _, _ = GLUE_GOLDEN["mnli"]
  fake = {"glue/mnli:validation_matched": [example]}
  assert len(load_task("glue_mnli_v100", fake, split="validation")) == 1
  assert {"validation_matched", "validation_mismatched"} <= set(
      seqio.get_mixture_or_task("glue_mnli_v100").splits)


@pytest.mark.parametrize("evaluated,trained_on,prediction", [
    ("mrpc", "qqp", "duplicate"), ("qqp", "mrpc", "equivalent")])
def test_zero_shot_transfer_task(evaluated, trained_on, prediction, load_task):
  example, inputs, _ = GLUE_GOLDEN[evaluated]
  example = dict(example, label=1)
  name = f"glue_{evaluated}_from_{trained_on}_v100"
  [out] = load_task(name, {f"glue/{evaluated}": [example]})
  assert out["inputs_pretokenized"].decode() == inputs.split(" ", 1)[1]  # Taskless.
  task = seqio.get_mixture_or_task(name)
  target = task.postprocess_fn(out["targets_pretokenized"].decode(), example=out, is_target=True)
  predicted = task.postprocess_fn(prediction, example=out)
  assert (target, predicted) == (1, 1)
  assert task.splits == ("validation",)
  mixture = seqio.get_mixture_or_task(f"glue_{trained_on}_to_{evaluated}_zeroshot_v100")
  assert sorted(t.name for t in mixture.tasks) == sorted(
      [name, f"taskless_glue_{trained_on}_v100"])


SQUAD_EXAMPLE = {
    "id": "1", "title": "Super_Bowl_50", "context": "Denver won Super Bowl 50, 24-10.",
    "question": "Who won Super Bowl 50?",
    "answers": {"text": ["Denver", "Denver Broncos"], "answer_start": [0, 0]}}
MRQA_EXAMPLE = {"subset": "BioASQ", "qid": "q1", "context": "BRCA1 is a gene (human).",
                "question": "What is BRCA1?", "answers": ["a gene", "gene"]}


def test_squad_golden_format_and_metric(load_task):
  [out] = load_task(qa.SQUAD, {"squad/v1.1": [SQUAD_EXAMPLE]})
  assert out["inputs_pretokenized"] == (
      b"question: Who won Super Bowl 50 ? context: Denver won Super Bowl 50 , 24 - 10 .")
  assert out["targets_pretokenized"] == b"Denver"
  task = seqio.get_mixture_or_task(qa.SQUAD)
  target = task.postprocess_fn("Denver", example=out, is_target=True)
  assert target == ["Denver", "Denver Broncos"]
  assert task.predict_metric_fns[0]([target], ["the Denver Broncos"]) == {"f1": 100.0}


@pytest.mark.parametrize("config", qa.MRQA_OUT_OF_DOMAIN)
def test_mrqa_out_of_domain_tasks(config, load_task):
  # TFDS keeps the MRQA out-of-domain dev sets as `test`; here they are validation.
  [out] = load_task(qa.mrqa_name(config), {f"mrqa/{config}:test": [MRQA_EXAMPLE]})
  assert out["inputs_pretokenized"] == b"question: What is BRCA1 ? context: BRCA1 is a gene ( human ) ."
  assert out["targets_pretokenized"] == b"a gene"


def test_squad_to_mrqa_mixture_trains_on_squad_only():
  mixture = seqio.get_mixture_or_task("squad_to_mrqa_v100")
  assert [t.name for t in mixture.tasks if "train" in t.splits] == [qa.SQUAD]
  assert len([t for t in mixture.tasks if "validation" in t.splits]) == 7
