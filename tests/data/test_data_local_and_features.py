"""Local TSV/JSONL tasks via gin, feature lengths, vocabulary, registration."""
import importlib
import json
import os
import pathlib

import gin
import numpy as np
import pytest
import seqio
import tensorflow_datasets as tfds

import prompt_tuning.data
from prompt_tuning.config.errors import UsageError
from prompt_tuning.data import features
from prompt_tuning.data import glue
from prompt_tuning.data import local
from prompt_tuning.data import super_glue
from prompt_tuning.data import vocab
from prompt_tuning.data.quickstart import ASSETS
from tests.runs import runs_testlib

TESTDATA = pathlib.Path(__file__).parent / "testdata"
TRAIN, VALIDATION = TESTDATA / "sentiment_train.tsv", TESTDATA / "sentiment_validation.jsonl"


def _load(name, split):
  dataset = seqio.get_mixture_or_task(name).get_dataset(
      {"inputs": 32, "targets": 8}, split=split, shuffle=False)
  return list(dataset.as_numpy_iterator())


@gin.configurable(module="data_tests")
def fake_trainer(mixture_or_task_name=gin.REQUIRED):
  """Stands in for a trainer whose task name comes from gin."""
  return mixture_or_task_name


def test_local_task_from_gin():
  gin.clear_config()
  gin.parse_config(f"""
      import prompt_tuning.data
      data_tests.fake_trainer.mixture_or_task_name = @prompt_tuning.data.local_task()
      prompt_tuning.data.local_task.name = "my_sentiment"
      prompt_tuning.data.local_task.paths = {{"train": "{TRAIN}", "validation": "{VALIDATION}"}}
      prompt_tuning.data.local_task.label_classes = ["negative", "positive"]
      prompt_tuning.data.local_task.metric_names = ["accuracy", "f1"]
  """)
  assert fake_trainer() == "my_sentiment"
  gin.clear_config()
  train = _load("my_sentiment", "train")
  assert [(e["inputs_pretokenized"], e["targets_pretokenized"]) for e in train] == [
      (b"the film is a delight", b"positive"), (b"a dull , lifeless mess", b"negative"),
      (b"witty and warm", b"positive")]
  task = seqio.get_mixture_or_task("my_sentiment")
  validation = _load("my_sentiment", "validation")
  targets = [task.postprocess_fn(e["targets_pretokenized"], example=e, is_target=True)
             for e in validation]
  predictions = [task.postprocess_fn(p) for p in ("negative", "neutral")]
  results = {}
  for metric_fn in task.predict_metric_fns:
    results.update(metric_fn(targets, predictions))
  assert results == {"accuracy": 50.0, "f1": 0.0}
  ranked = _load("my_sentiment_rank_classification", "validation")
  assert [e["targets_pretokenized"] for e in ranked] == [b"negative", b"positive"] * 2


def test_local_task_free_text_and_custom_columns(tmp_path):
  path = tmp_path / "qa.tsv"
  path.write_text("question\tanswer\nwho wrote it ?\tJane Austen\n", encoding="utf-8")
  name = local.local_task(name="my_qa", paths={"validation": str(path)},
                          inputs_column="question", targets_column="answer",
                          metric_names=["squad_f1"])
  [example] = _load(name, "validation")
  assert example["targets_pretokenized"] == b"Jane Austen"
  task = seqio.get_mixture_or_task(name)
  assert task.predict_metric_fns[0](["Jane Austen"], ["austen"])["f1"] == pytest.approx(
      100 * 2 / 3)


def test_feature_lengths_leave_room_for_the_prompt():
  lengths = features.task_feature_lengths()
  assert lengths == {"inputs": 512, "targets": 8}
  assert features.encoder_length(lengths["inputs"], prompt_length=100) == 612
  with pytest.raises(ValueError):
    features.task_feature_lengths(inputs_length=1)


def test_inputs_are_trimmed_to_inputs_length_with_eos():
  long_text = "word " * 100
  [example] = seqio.preprocessors.append_eos_after_trim(
      seqio.preprocessors.tokenize(
          _dataset({"inputs": long_text, "targets": "positive"}), features.output_features()),
      features.output_features(), sequence_length={"inputs": 16, "targets": 8}
  ).as_numpy_iterator()
  assert len(example["inputs"]) == 16 and example["inputs"][-1] == 1


def _dataset(example):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.data.Dataset.from_tensors(example)


def test_every_verbalizer_fits_the_default_targets_length():
  vocabulary = vocab.default_vocabulary()
  labels = {l for spec in super_glue.SPECS if spec.labels for l in spec.labels}
  labels |= {l for names, _ in glue.CLASSIFICATION.values() for l in names}
  for label in labels:
    assert len(vocabulary.encode(label)) + 1 <= features.CLASSIFICATION_TARGETS_LENGTH, label


def test_vocabulary_is_shipped_with_the_package():
  vocabulary = vocab.default_vocabulary()
  assert vocabulary.vocab_size == 32_100
  assert os.path.exists(vocab.VOCAB_PATH) and "shared" not in vocab.VOCAB_PATH
  assert vocab.sentinel_id(0) == 32_099 and vocab.sentinel_id(99) == 32_000
  assert vocabulary.decode([vocab.sentinel_id(3)]) == "<extra_id_3>"
  assert vocabulary.decode(vocabulary.encode("Hello world!")) == "Hello world!"


def test_registered_names():
  names = set(prompt_tuning.data.TASK_NAMES)
  for task in ("boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc", "axb", "axg"):
    for prefix in ("", "taskless_", "task_index_", "taskless_sentinel_"):
      assert f"{prefix}super_glue_{task}_v102" in names
  for task in ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"):
    for prefix in ("", "taskless_", "task_index_", "taskless_sentinel_"):
      assert f"{prefix}glue_{task}_v100" in names
  assert "taskless_super_glue_rte_v102_rank_classification" in names
  assert "taskless_sentinel_super_glue_rte_v102_rank_classification" not in names
  assert {"glue_mrpc_from_qqp_v100", "glue_qqp_from_mrpc_v100", "squad_v110",
          "mrqa_textbook_qa_v100", "squad_to_mrqa_v100", "super_glue_v102_proportional"} <= names
  for prefix in ("", "taskless_", "task_index_", "taskless_sentinel_"):
    assert f"{prefix}dpr_v001_simple" in names
  assert len(names) == len(prompt_tuning.data.TASK_NAMES) == 141
  assert all(seqio.get_mixture_or_task(n) for n in names)


def test_import_is_idempotent_and_downloads_nothing(monkeypatch):
  def refuse(*args, **kwargs):
    raise AssertionError("TFDS was touched at import time")

  monkeypatch.setattr(tfds, "builder", refuse)
  monkeypatch.setattr(tfds, "load", refuse)
  importlib.reload(prompt_tuning.data)
  importlib.reload(prompt_tuning.data)
  assert len(prompt_tuning.data.TASK_NAMES) == 141


def test_rank_classification_twin_from_gin():
  gin.clear_config()
  gin.parse_config(f"""
      import prompt_tuning.data
      data_tests.fake_trainer.mixture_or_task_name = @prompt_tuning.data.rank_classification_twin()
      prompt_tuning.data.rank_classification_twin.task = @prompt_tuning.data.local_task()
      prompt_tuning.data.local_task.name = "my_ranked_sentiment"
      prompt_tuning.data.local_task.paths = {{"validation": "{VALIDATION}"}}
      prompt_tuning.data.local_task.label_classes = ["negative", "positive"]
  """)
  assert fake_trainer() == "my_ranked_sentiment_rank_classification"
  gin.clear_config()
  ranked = _load("my_ranked_sentiment_rank_classification", "validation")
  assert [(e["targets_pretokenized"], bool(e["rank_correct"])) for e in ranked] == [
      (b"negative", True), (b"positive", False), (b"negative", False), (b"positive", True)]
  assert seqio.get_mixture_or_task("my_ranked_sentiment_rank_classification").score_metric_fns


def test_rank_classification_twin_needs_a_classification_task():
  local.local_task(name="my_free_text", paths={"validation": str(VALIDATION)})
  with pytest.raises(UsageError, match="task 'my_free_text' has no rank-classification twin "
                     "'my_free_text_rank_classification': only classification tasks have one"):
    local.rank_classification_twin(task="my_free_text")
  assert local.rank_classification_twin(task="taskless_super_glue_rte_v102") == (
      "taskless_super_glue_rte_v102_rank_classification")


def test_local_rank_classification_eval_from_gin_alone(tmp_path):
  """`python -m prompt_tuning.eval` scores a local task's labels with only a gin file."""
  np.save(tmp_path / "prompt.npy", np.random.RandomState(0).uniform(-0.5, 0.5, (4, 64)))
  (tmp_path / "eval.gin").write_text(f"""
import prompt_tuning.data
include 'models/t5_1_1_quickstart_prompt.gin'
include 'runs/prompt_eval.gin'
MIXTURE_OR_TASK_NAME = @prompt_tuning.data.rank_classification_twin()
prompt_tuning.data.rank_classification_twin.task = @prompt_tuning.data.local_task()
prompt_tuning.data.local_task.name = "my_reviews"
prompt_tuning.data.local_task.paths = {{"validation": "{os.path.join(ASSETS, 'validation.tsv')}"}}
prompt_tuning.data.local_task.label_classes = ["positive", "negative"]
INITIAL_CHECKPOINT_PATH = "{os.path.join(ASSETS, 't5_1_1_tiny_lm')}"
PROMPT_FILE = "{tmp_path / 'prompt.npy'}"
PROMPT_LENGTH = 4
EVAL_OUTPUT_DIR = "{tmp_path / 'eval'}"
TASK_FEATURE_LENGTHS = {{'inputs': 24, 'targets': 4}}
EVAL_MAX_EXAMPLES = 6
""")
  result = runs_testlib.run_cli("eval", f"--gin_file={tmp_path / 'eval.gin'}")
  assert result.returncode == 0, result.stderr
  [metrics_line] = (tmp_path / "eval" / "metrics.jsonl").read_text().splitlines()
  assert "eval/my_reviews_rank_classification/accuracy" in json.loads(metrics_line)
  rows = [json.loads(line) for line in (
      tmp_path / "eval" / "my_reviews_rank_classification.validation.predictions.jsonl"
  ).read_text().splitlines()]
  assert [r["targets"] for r in rows] == ["positive", "negative"] * 3  # One row per label.
  assert all(isinstance(r["output"], float) and r["output"] < 0 for r in rows)  # Scores.
