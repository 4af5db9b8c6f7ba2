"""The quickstart's task and frozen checkpoint, both shipped in prompt_tuning/assets/quickstart/.

Used by configs/runs/quickstart.gin; rebuilt by scripts/pretrain_quickstart_model.py, whose
docstring describes the model, the pretraining corpus and the held-out task.
"""
import functools
import os

import gin
import seqio
import tensorflow as tf

from prompt_tuning.data import features
from prompt_tuning.data import local
from prompt_tuning.data import postprocessors
from prompt_tuning.data import preprocessors

ASSETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets", "quickstart")
TASK_NAME = "quickstart_review_sentiment"
LABELS = ("positive", "negative")


@gin.configurable(module="prompt_tuning.data.quickstart")
def task(name: str = TASK_NAME) -> str:
  """Registers the review-sentiment task (local TSV files) and returns its name."""
  return local.local_task(name=name, label_classes=list(LABELS),
                         paths={s: os.path.join(ASSETS, f"{s}.tsv") for s in ("train", "validation")})


@gin.configurable(module="prompt_tuning.data.quickstart")
def checkpoint() -> str:
  """The pretrained tiny T5 1.1 (a T5X checkpoint folder)."""
  return os.path.join(ASSETS, "t5_1_1_tiny_lm")


# ----------------------------------------------------------------------------- two tasks

ASPECTS_TASK_NAME = "quickstart_review_aspects"
MULTITASK_NAME = "quickstart_multitask"  # the sentiment task (task 0) and the aspects task (1)


@seqio.map_over_dataset
def _as_aspects(x):
  """`review : superb pasta , friendly waiter .` -> `aspects : pasta superb , waiter friendly .`"""
  inputs = tf.strings.regex_replace(x["inputs"], r"^review :", "aspects :")
  return dict(x, inputs=tf.strings.regex_replace(inputs, r"(\w+) (\w+) ([,.])", r"\2 \1 \3"))


def _register(name: str, text_preprocessors, task_index=None) -> str:
  steps = list(text_preprocessors) + [seqio.preprocessors.tokenize]
  if task_index is not None:
    steps.append(functools.partial(preprocessors.prepend_task_index, index=task_index))
  steps.append(seqio.preprocessors.append_eos_after_trim)
  seqio.TaskRegistry.remove(name)
  paths = {s: os.path.join(ASSETS, f"{s}.tsv") for s in ("train", "validation")}
  seqio.TaskRegistry.add(name, source=local.file_source(paths), output_features=features.output_features(),
                         preprocessors=steps, postprocess_fn=postprocessors.label_index(list(LABELS)),
                         metric_fns=local.labelled_metrics(LABELS))
  return name


@gin.configurable(module="prompt_tuning.data.quickstart")
def aspects_task() -> str:
  """Registers the review-aspects task (`aspects : pasta superb , waiter friendly .` -> positive /
  negative: the quickstart's reviews, each adjective after its noun) and returns its name."""
  return _register(ASPECTS_TASK_NAME, [_as_aspects])


@gin.configurable(module="prompt_tuning.data.quickstart")
def multitask(task_index: bool = True) -> str:
  """Registers the quickstart's two-task mixture (equal rates) and returns its name.

  The members read the quickstart's files: the review-sentiment task (task 0) and the
  review-aspects task (task 1, `aspects_task`), formats the corpus never uses. With
  `task_index`, their `task_index_` variants, whose inputs start with `<extra_id_0>` /
  `<extra_id_1>` (multi-task prompts read the task from it); otherwise the plain tasks (the task
  then comes from the mixture, as a `prompt_ids` feature). The plain tasks are registered either
  way, for single-task tools.
  """
  members = [task(), aspects_task()]
  name = MULTITASK_NAME
  if task_index:
    members = [_register("task_index_" + TASK_NAME, [], 0),
               _register("task_index_" + ASPECTS_TASK_NAME, [_as_aspects], 1)]
    name = "task_index_" + MULTITASK_NAME
  seqio.MixtureRegistry.remove(name)
  seqio.MixtureRegistry.add(name, members, default_rate=1.0)
  return name
