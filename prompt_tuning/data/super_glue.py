"""SuperGLUE v1.0.2 (TFDS `super_glue/*:1.0.2`): 8 tasks + AX-b, AX-g.

Registers `super_glue_{task}_v102` in the variants of `registry`
(plus `_rank_classification` twins for the classification tasks). Formats
and metrics follow T5; the diagnostics are cast as RTE, as T5 does.

Also Definite Pronoun Resolution (TFDS `definite_pronoun_resolution:1.1.0`,
train and test only) as T5's `dpr_v001_simple`: WSC-style training data that
T5 and the paper's multi-task model tuning add to SuperGLUE. Its variants
take WSC's task index; accuracy is an exact match of the referent's text.
"""
import dataclasses
import functools
from typing import Callable, Optional, Sequence, Tuple

import seqio

from prompt_tuning.data import metrics
from prompt_tuning.data import postprocessors
from prompt_tuning.data import preprocessors
from prompt_tuning.data import registry

TFDS_VERSION = "1.0.2"
# Task-index sentinels, in the order of the paper's tables.
TASK_INDEX = {name: i for i, name in enumerate(metrics.SUPER_GLUE_TASKS)}
RTE_LABELS = ("entailment", "not_entailment")
BINARY = ("False", "True")


class PositiveTrainSource(seqio.TfdsDataSource):
  """TFDS source whose `train` split keeps only label == 1 (WSC referents)."""

  def get_dataset(self, split=None, *args, **kwargs):
    dataset = super().get_dataset(split, *args, **kwargs)
    if split == "train":
      dataset = dataset.filter(lambda x: x["label"] == 1)
    return dataset


@dataclasses.dataclass(frozen=True)
class Spec:
  """How one SuperGLUE config becomes a task."""
  name: str
  text: Callable
  postprocess: Callable
  metric_fns: Tuple[Callable, ...]
  labels: Optional[Sequence[str]] = None  # Set: rank classification too.
  tfds_config: Optional[str] = None
  splits: Sequence[str] = ("train", "validation", "test")
  source_cls: type = seqio.TfdsDataSource
  task_index_of: Optional[str] = None


def _classification(name, labels, metric_fns=(metrics.accuracy,), prefix=None,
                    feature_names=None, **kwargs) -> Spec:
  text = functools.partial(preprocessors.glue_text, prefix=prefix or name,
                           label_classes=labels, feature_names=feature_names)
  return Spec(name, text, postprocessors.label_index(labels), tuple(metric_fns), labels, **kwargs)


SPECS = (
    _classification("boolq", BINARY),
    _classification("cb", ("entailment", "contradiction", "neutral"),
                    (metrics.accuracy, metrics.macro_f1(3))),
    _classification("copa", ("choice1", "choice2")),
    Spec("multirc", preprocessors.multirc_text, postprocessors.multirc,
         (metrics.multirc_f1a, metrics.multirc_exact_match), BINARY),
    Spec("record", preprocessors.record_text, postprocessors.record, (metrics.record_em_f1,)),
    _classification("rte", RTE_LABELS),
    _classification("wic", BINARY, feature_names=("sentence1", "sentence2", "word")),
    Spec("wsc", preprocessors.wsc_text, postprocessors.wsc, (metrics.accuracy,),
         tfds_config="wsc.fixed", source_cls=PositiveTrainSource),
    # Diagnostics: test split only (labelled), read as RTE.
    _classification("axb", RTE_LABELS, (metrics.matthews_corrcoef,), prefix="rte",
                    splits=("test",), task_index_of="rte"),
    _classification("axg", RTE_LABELS, prefix="rte", splits=("test",), task_index_of="rte"),
)


DPR = "dpr_v001_simple"  # T5's name.
DPR_TFDS_NAME = "definite_pronoun_resolution:1.1.0"


def base_name(task: str) -> str:
  return f"super_glue_{task}_{registry.version_tag(TFDS_VERSION)}"


def register() -> list:
  """Registers every SuperGLUE task; returns the names."""
  names = []
  for spec in SPECS:
    source = spec.source_cls(
        tfds_name=f"super_glue/{spec.tfds_config or spec.name}:{TFDS_VERSION}",
        splits=list(spec.splits))
    names += registry.add_variants(
        base_name(spec.name), source, [spec.text], spec.postprocess, spec.metric_fns,
        TASK_INDEX[spec.task_index_of or spec.name], rank_labels=spec.labels,
        rank_grouped=spec.name == "multirc")
  names += registry.add_variants(
      DPR, seqio.TfdsDataSource(tfds_name=DPR_TFDS_NAME, splits=["train", "test"]),
      [preprocessors.dpr_text], postprocessors.text, [metrics.accuracy], TASK_INDEX["wsc"])
  return names
