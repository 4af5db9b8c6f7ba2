"""Bring your own data: a seqio task from local TSV or JSONL files, via gin.

  import prompt_tuning.data
  MIXTURE_OR_TASK_NAME = @prompt_tuning.data.local_task()
  prompt_tuning.data.local_task.name = "my_sentiment"
  prompt_tuning.data.local_task.paths = {"train": "/data/train.tsv",
                                          "validation": "/data/dev.tsv"}
  prompt_tuning.data.local_task.label_classes = ["negative", "positive"]

TSV files need a header row naming the columns; JSONL files hold one object
per line. Text is used as is (no task prefix). With `label_classes`, targets
are verbalizers, outputs outside them count as wrong, and
`{name}_rank_classification` is registered too. Files are checked when the
task is registered and read only when a dataset is requested.
"""
import csv
import json
import os
from typing import Dict, List, Mapping, Optional, Sequence

import gin
import seqio
import tensorflow as tf

from prompt_tuning.data import metrics
from prompt_tuning.data import postprocessors
from prompt_tuning.data import rank_classification
from prompt_tuning.data import registry

_FORMATS = {".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}


def _file_format(path: str) -> str:
  extension = os.path.splitext(path)[1].lower()
  if extension not in _FORMATS:
    raise ValueError(f"{path}: unknown file type {extension!r}; use .tsv (with a header "
                     f"row) or .jsonl")
  return _FORMATS[extension]


def read_rows(path: str) -> List[Dict[str, str]]:
  """All rows of a TSV/JSONL file as dicts (TSV keys come from the header)."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"local task file not found: {path} (check the `paths` binding)")
  with open(path, encoding="utf-8", newline="") as f:
    if _file_format(path) == "tsv":
      return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [json.loads(line) for line in f if line.strip()]


def _check_columns(path: str, columns: Sequence[str]) -> None:
  rows = read_rows(path)
  if not rows:
    raise ValueError(f"{path} has no rows")
  missing = [c for c in columns if c not in rows[0]]
  if missing:
    raise ValueError(f"{path} has no column {missing[0]!r}; its columns are "
                     f"{sorted(rows[0])}: set local_task.inputs_column/targets_column")


def _labelled_metrics(label_classes: Sequence[str]) -> Dict[str, object]:
  return {"accuracy": metrics.accuracy, "f1": metrics.f1_with_invalid,
          "macro_f1": metrics.macro_f1(len(label_classes)),
          "matthews_corrcoef": metrics.matthews_corrcoef}


def _text_metrics() -> Dict[str, object]:
  def exact_match(targets, predictions):
    return metrics.accuracy([t.strip() for t in targets], [p.strip() for p in predictions])

  def squad_f1(targets, predictions):
    return metrics.squad_f1([[t] for t in targets], predictions)

  return {"accuracy": exact_match, "squad_f1": squad_f1}


def _text(output, example=None, is_target=False) -> str:
  del example, is_target
  return postprocessors.as_text(output)


@gin.configurable(module="prompt_tuning.data")
def local_task(name: str = gin.REQUIRED, paths: Mapping[str, str] = gin.REQUIRED,
               inputs_column: str = "inputs", targets_column: str = "targets",
               metric_names: Sequence[str] = ("accuracy",),
               label_classes: Optional[Sequence[str]] = None) -> str:
  """Registers task `name` reading split -> file `paths`; returns `name`.

  metric_names: with label_classes any of accuracy, f1 (binary: class 1),
  macro_f1, matthews_corrcoef; without: accuracy (exact match), squad_f1.
  """
  columns = (inputs_column, targets_column)
  for path in paths.values():
    _check_columns(path, columns)
  available = _labelled_metrics(label_classes) if label_classes else _text_metrics()
  unknown = [m for m in metric_names if m not in available]
  if unknown:
    raise ValueError(f"unknown metric {unknown[0]!r} for local task {name!r}; "
                     f"choose from {sorted(available)}")

  def dataset_fn(split: str, shuffle_files: bool, seed: Optional[int] = None) -> tf.data.Dataset:
    del shuffle_files, seed  # One file per split: nothing to shuffle.
    rows = read_rows(paths[split])
    return tf.data.Dataset.from_tensor_slices({
        "inputs": [str(r[inputs_column]) for r in rows],
        "targets": [str(r[targets_column]) for r in rows],
        "idx": list(range(len(rows)))})

  source = seqio.FunctionDataSource(dataset_fn, splits=list(paths))
  postprocess_fn = postprocessors.label_index(label_classes) if label_classes else _text
  metric_fns = [available[m] for m in metric_names]
  registry.add_task(name, source, [], postprocess_fn, metric_fns)
  if label_classes:
    registry.add_task(name + rank_classification.SUFFIX, source, [], postprocessors.rank_target,
                      [rank_classification.ranked(m) for m in metric_fns],
                      rank_labels=list(label_classes))
  return name
