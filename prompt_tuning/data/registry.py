"""Registering tasks: variants, standard pipelines, idempotent adds.

Every benchmark task exists in these variants (the first three named as in
the official prompt-tuning code):
  standard    `{base}`             T5's format, with the task-name prefix;
  taskless    `taskless_{base}`    the paper's format: prefix removed;
  task_index  `task_index_{base}`  taskless, inputs start with sentinel
                                   `<extra_id_{i}>` naming the task (for
                                   multi-task prompts);
  sentinel    `taskless_sentinel_{base}`  taskless, targets start with
                                   `<extra_id_0>` as span-corruption outputs do
                                   (the paper's "span corruption + sentinel"
                                   ablation, Figure 3c); predictions are
                                   scored with the sentinel removed.
Classification tasks also get `{name}_rank_classification` (score-based), for
every variant but `sentinel`.
Re-registering a name replaces it, so importing twice is harmless.
"""
import functools
from typing import Callable, Optional, Sequence

import seqio

from prompt_tuning.data import features
from prompt_tuning.data import postprocessors
from prompt_tuning.data import preprocessors
from prompt_tuning.data import rank_classification

STANDARD, TASKLESS, TASK_INDEX, SENTINEL = "standard", "taskless", "task_index", "sentinel"
VARIANTS = (STANDARD, TASKLESS, TASK_INDEX, SENTINEL)
_PREFIXES = {STANDARD: "", TASKLESS: "taskless_", TASK_INDEX: "task_index_",
             SENTINEL: "taskless_sentinel_"}


def version_tag(tfds_version: str) -> str:
  """TFDS "1.0.2" -> "v102", the suffix of task names."""
  return "v" + tfds_version.replace(".", "")


def variant_name(base: str, variant: str) -> str:
  return _PREFIXES[variant] + base


def pipeline(text_preprocessors: Sequence[Callable], variant: str = STANDARD,
             task_index: Optional[int] = None,
             rank_labels: Optional[Sequence[str]] = None) -> list:
  """Text preprocessors -> [variant edit] -> [ranking] -> tokens + EOS."""
  steps = list(text_preprocessors)
  if variant != STANDARD:
    steps.append(preprocessors.drop_task_prefix)
  if rank_labels:
    steps.append(functools.partial(preprocessors.expand_for_ranking, label_classes=rank_labels))
  steps.append(seqio.preprocessors.tokenize)
  if variant == TASK_INDEX:
    steps.append(functools.partial(preprocessors.prepend_task_index, index=task_index))
  if variant == SENTINEL:
    steps.append(preprocessors.prepend_target_sentinel)
  steps.append(seqio.preprocessors.append_eos_after_trim)
  return steps


def add_task(name: str, source: seqio.DataSource, text_preprocessors: Sequence[Callable],
             postprocess_fn: Optional[Callable], metric_fns: Sequence[Callable],
             variant: str = STANDARD, task_index: Optional[int] = None,
             rank_labels: Optional[Sequence[str]] = None) -> seqio.Task:
  """Registers (or re-registers) one task with the T5 output features."""
  seqio.TaskRegistry.remove(name)
  return seqio.TaskRegistry.add(
      name, source=source, output_features=features.output_features(),
      preprocessors=pipeline(text_preprocessors, variant, task_index, rank_labels),
      postprocess_fn=postprocess_fn, metric_fns=list(metric_fns))


def add_variants(base: str, source: seqio.DataSource, text_preprocessors: Sequence[Callable],
                 postprocess_fn: Callable, metric_fns: Sequence[Callable], task_index: int,
                 rank_labels: Optional[Sequence[str]] = None,
                 rank_grouped: bool = False) -> list:
  """The variants of `base` (and their rank-classification twins).

  `rank_labels` turns on ranking over those label strings; the ranked
  metrics wrap `metric_fns` (`rank_grouped` for MultiRC-style targets).
  """
  names = []
  for variant in VARIANTS:
    name = variant_name(base, variant)
    post = postprocessors.without_sentinel(postprocess_fn) if variant == SENTINEL else postprocess_fn
    add_task(name, source, text_preprocessors, post, metric_fns, variant, task_index)
    names.append(name)
    if rank_labels and variant != SENTINEL:
      ranked = [rank_classification.ranked(m, grouped=rank_grouped) for m in metric_fns]
      add_task(name + rank_classification.SUFFIX, source, text_preprocessors,
               postprocessors.rank_target, ranked, variant, task_index, rank_labels)
      names.append(name + rank_classification.SUFFIX)
  return names


def task_index_of(task: seqio.Task) -> Optional[int]:
  """The index `<extra_id_i>` that a task-index variant prepends to its inputs; None for a task
  that prepends none."""
  for step in task.preprocessors:
    if getattr(step, "func", None) is preprocessors.prepend_task_index:
      return int(step.keywords["index"])
  return None


def add_mixture(name: str, task_names: Sequence[str]) -> seqio.Mixture:
  """Equal-rate mixture; tasks lacking a split are skipped for that split."""
  seqio.MixtureRegistry.remove(name)
  return seqio.MixtureRegistry.add(name, list(task_names), default_rate=1.0)
