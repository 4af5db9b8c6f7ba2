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
`{name}_rank_classification` is registered too; to score the labels instead
of decoding, from gin alone, use the twin:

  MIXTURE_OR_TASK_NAME = @prompt_tuning.data.rank_classification_twin()
  prompt_tuning.data.rank_classification_twin.task = @prompt_tuning.data.local_task()
 Files are read in full when
the task is registered, so a missing file or column, an empty file, a line
without a value (or, with `label_classes`, a target that is not one of them),
bad UTF-8 or a line that is not JSON fails then, before a run writes anything,
as one `UsageError` naming the file and line; they are read again when a
dataset is requested.
"""
import json
import os
from typing import Dict, List, Mapping, Optional, Sequence

import gin
import seqio
import tensorflow as tf

from prompt_tuning.config.errors import UsageError
from prompt_tuning.data import metrics
from prompt_tuning.data import postprocessors
from prompt_tuning.data import rank_classification
from prompt_tuning.data import registry

_FORMATS = {".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}


def _file_format(path: str) -> str:
  extension = os.path.splitext(path)[1].lower()
  if extension not in _FORMATS:
    raise UsageError(f"local task file {path} has the unknown type {extension!r}: name it .tsv "
                     "(tab-separated, with a header row) or .jsonl (one JSON object per line)")
  return _FORMATS[extension]


def _lines(path: str):
  """(line number, text) of each non-blank line; bytes that are not UTF-8 are refused."""
  if not os.path.isfile(path):
    raise UsageError(f"local task file {path} does not exist: fix the path in "
                     "prompt_tuning.data.local_task.paths")
  with open(path, "rb") as f:
    for number, raw in enumerate(f, start=1):
      try:
        text = raw.decode("utf-8").rstrip("\r\n")
      except UnicodeDecodeError as err:
        raise UsageError(f"{path} line {number} is not UTF-8 text (byte {err.start + 1} of the "
                         "line): save the file as UTF-8") from None
      if text.strip():
        yield number, text


def _tsv_rows(path: str):
  """The header's column names and the (line number, row) pairs below it."""
  lines = _lines(path)
  header = next(lines, None)
  if header is None:
    raise UsageError(f"local task file {path} is empty: a TSV file needs a header row naming "
                     "its columns, then one example per line")
  columns = header[1].split("\t")
  rows = []
  for number, text in lines:
    fields = text.split("\t")
    if len(fields) > len(columns):
      raise UsageError(f"{path} line {number} has {len(fields)} tab-separated fields but the "
                       f"header names {len(columns)}: remove the extra tabs from its text")
    rows.append((number, dict(zip(columns, fields))))
  return columns, rows


def _jsonl_rows(path: str):
  """The first object's keys and the (line number, object) pairs."""
  rows = []
  for number, text in _lines(path):
    try:
      row = json.loads(text)
    except json.JSONDecodeError as err:
      raise UsageError(f"{path} line {number} is not JSON ({err.msg} at column {err.colno}): "
                       "write one JSON object per line") from None
    if not isinstance(row, dict):
      raise UsageError(f"{path} line {number} is a JSON {type(row).__name__}, not an object: "
                       'write one object per line, e.g. {"inputs": "...", "targets": "..."}')
    rows.append((number, row))
  return (list(rows[0][1]) if rows else []), rows


def read_examples(path: str, columns: Sequence[str]) -> Dict[str, List[str]]:
  """Column -> texts of a TSV/JSONL file; each problem is one UsageError naming file and line."""
  names, rows = _tsv_rows(path) if _file_format(path) == "tsv" else _jsonl_rows(path)
  if not rows:
    raise UsageError(f"local task file {path} has no examples: add one per line"
                     + (" below the header row" if names else ""))
  for column in columns:
    if column not in names:
      raise UsageError(f"local task file {path} has no column {column!r} (it has "
                       f"{', '.join(map(repr, names))}): set local_task.inputs_column / "
                       "targets_column to its names")
  for number, row in rows:
    for column in columns:
      if row.get(column) is None or not str(row[column]).strip():
        raise UsageError(f"{path} line {number} has no {column!r} value: fill it in or remove "
                         "the line")
  return {column: [str(row[column]) for _, row in rows] for column in columns}


def _check_labels(path: str, targets: Sequence[str], label_classes: Sequence[str]) -> None:
  unknown = [t for t in targets if t not in label_classes]
  if unknown:
    raise UsageError(f"local task file {path} has the target {unknown[0]!r}, which is not one "
                     f"of label_classes {list(label_classes)}: fix the file or label_classes")


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
    targets = read_examples(path, columns)[targets_column]  # Every problem is reported now.
    if label_classes:
      _check_labels(path, targets, label_classes)
  available = _labelled_metrics(label_classes) if label_classes else _text_metrics()
  unknown = [m for m in metric_names if m not in available]
  if unknown:
    raise UsageError(f"unknown metric {unknown[0]!r} for local task {name!r}: choose from "
                     f"{', '.join(sorted(available))}")

  source = file_source(paths, inputs_column, targets_column)
  postprocess_fn = postprocessors.label_index(label_classes) if label_classes else postprocessors.text
  metric_fns = [available[m] for m in metric_names]
  registry.add_task(name, source, [], postprocess_fn, metric_fns)
  if label_classes:
    registry.add_task(name + rank_classification.SUFFIX, source, [], postprocessors.rank_target,
                      [rank_classification.ranked(m) for m in metric_fns],
                      rank_labels=list(label_classes))
  return name


def file_source(paths: Mapping[str, str], inputs_column: str = "inputs",
                targets_column: str = "targets") -> seqio.DataSource:
  """The examples of split -> TSV/JSONL file `paths` ({"inputs", "targets", "idx"}), read when
  a dataset is requested."""
  columns = (inputs_column, targets_column)

  def dataset_fn(split: str, shuffle_files: bool, seed: Optional[int] = None) -> tf.data.Dataset:
    del shuffle_files, seed  # One file per split: nothing to shuffle.
    texts = read_examples(paths[split], columns)
    return tf.data.Dataset.from_tensor_slices({
        "inputs": texts[inputs_column], "targets": texts[targets_column],
        "idx": list(range(len(texts[inputs_column])))})

  return seqio.FunctionDataSource(dataset_fn, splits=list(paths))


def labelled_metrics(label_classes: Sequence[str]) -> list:
  """accuracy, f1 (class 1), macro_f1, matthews_corrcoef for targets among `label_classes`."""
  return list(_labelled_metrics(label_classes).values())


@gin.configurable(module="prompt_tuning.data")
def rank_classification_twin(task: str = gin.REQUIRED) -> str:
  """The name of `task`'s `_rank_classification` twin, for MIXTURE_OR_TASK_NAME in gin.

  `task` may be a reference that registers a task and returns its name
  (`@prompt_tuning.data.local_task()`), so a local task is scored from gin
  alone, without a module that registers its twin.
  """
  twin = task + rank_classification.SUFFIX
  if twin not in seqio.TaskRegistry.names():
    raise UsageError(f"task {task!r} has no rank-classification twin {twin!r}: only "
                     "classification tasks have one (for a local task, set "
                     "prompt_tuning.data.local_task.label_classes)")
  return twin
