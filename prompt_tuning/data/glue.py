"""GLUE (TFDS `glue/*:1.0.0`, the paper's version): T5 formats and metrics.

Registers `glue_{task}_v100` in the variants of `registry`, with
`_rank_classification` twins for the classification tasks. MNLI's
`validation` is the matched set; both named sets are there too.
"""
import functools

import seqio

from prompt_tuning.data import metrics
from prompt_tuning.data import postprocessors
from prompt_tuning.data import preprocessors
from prompt_tuning.data import registry

TFDS_VERSION = "1.0.0"
_DEFAULT_SPLITS = ("train", "validation", "test")
# name -> (labels, metric fns); labels as in the TFDS builder (index order).
CLASSIFICATION = {
    "cola": (("unacceptable", "acceptable"), (metrics.matthews_corrcoef,)),
    "sst2": (("negative", "positive"), (metrics.accuracy,)),
    "mrpc": (("not_equivalent", "equivalent"), (metrics.f1_with_invalid, metrics.accuracy)),
    "qqp": (("not_duplicate", "duplicate"), (metrics.f1_with_invalid, metrics.accuracy)),
    "mnli": (("entailment", "neutral", "contradiction"), (metrics.accuracy,)),
    "qnli": (("entailment", "not_entailment"), (metrics.accuracy,)),
    "rte": (("entailment", "not_entailment"), (metrics.accuracy,)),
    "wnli": (("not_entailment", "entailment"), (metrics.accuracy,)),
}
TASK_INDEX = {name: i for i, name in enumerate(
    ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"))}
_MNLI_SPLITS = {"train": "train", "validation": "validation_matched",
                "validation_matched": "validation_matched",
                "validation_mismatched": "validation_mismatched",
                "test_matched": "test_matched", "test_mismatched": "test_mismatched"}


def base_name(task: str) -> str:
  return f"glue_{task}_{registry.version_tag(TFDS_VERSION)}"


def source(task: str, splits=_DEFAULT_SPLITS) -> seqio.TfdsDataSource:
  splits = _MNLI_SPLITS if task == "mnli" else list(splits)
  return seqio.TfdsDataSource(tfds_name=f"glue/{task}:{TFDS_VERSION}", splits=splits)


def text_preprocessor(task: str):
  labels, _ = CLASSIFICATION[task]
  return functools.partial(preprocessors.glue_text, prefix=task, label_classes=labels)


def register() -> list:
  """Registers every GLUE task; returns the names."""
  names = []
  for task, (labels, metric_fns) in CLASSIFICATION.items():
    names += registry.add_variants(
        base_name(task), source(task), [text_preprocessor(task)],
        postprocessors.label_index(labels), metric_fns, TASK_INDEX[task], rank_labels=labels)
  names += registry.add_variants(
      base_name("stsb"), source("stsb"), [preprocessors.stsb_text],
      postprocessors.string_to_float, [metrics.pearson_and_spearman], TASK_INDEX["stsb"])
  return names
