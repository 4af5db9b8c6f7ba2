"""The prompt methods in a run (the modules of `prompt_tuning.model.extended`, the losses of
`training.rank_loss` and `training.wayward`): the settings each cannot serve, the tasks a
multi-task prompt tells apart, the step's objective and regularizer, and what the run's prompt
files hold.

Everything here is checked before a run writes anything; a conflict is one UsageError naming it.
"""
from __future__ import annotations

import functools
import os
from typing import Callable, Optional, Sequence

import numpy as np

from prompt_tuning.checkpoints import prompt_io
from prompt_tuning.config.errors import UsageError
from prompt_tuning.data import pipeline
from prompt_tuning.data import registry
from prompt_tuning.model import params as params_lib
from prompt_tuning.model import prompted as model_lib
from prompt_tuning.model import prompts as prompts_lib
from prompt_tuning.parallel import multihost
from prompt_tuning.runs import peft_export
from prompt_tuning.runs.settings import TuningConfig
from prompt_tuning.training import rank_loss
from prompt_tuning.training import wayward


def check_settings(model: model_lib.PromptT5, dataset, tuning: TuningConfig,
                   trainable: Sequence[str], exports_peft: bool = False) -> None:
  """Refuses a method combined with an option it does not support, or left out of TRAINABLE
  (its parameters exist in no checkpoint, so they must train)."""
  for name in model_lib.methods(model):
    names = [n for n in params_lib.names(model) if n.startswith(name + "/")]
    frozen = [n for n in names if not model_lib.is_trainable(n, trainable)]
    if frozen:
      raise UsageError(f"{frozen[0]} belongs to the {name} method but TRAINABLE {list(trainable)} does not "
                       f"match it, so it would be read from the frozen checkpoint, which has none: add "
                       f"'{name}/.*' to TRAINABLE")
  conflicts = model_lib.packing_conflicts(model)
  if dataset.pack and (dataset.length_buckets or conflicts or tuning.rank_loss):
    what = ", ".join(conflicts + (["LENGTH_BUCKETS"] if dataset.length_buckets else [])
                     + ([f"the {tuning.rank_loss} rank loss"] if tuning.rank_loss else []))
    raise UsageError(f"PACK = True needs the prefix placement, one shared prompt, the token loss and "
                     f"no LENGTH_BUCKETS (packing already removes the padding), but this run has "
                     f"{what}: unset PACK or those")
  if tuning.rank_loss:
    pipeline.num_candidates(dataset.mixture_or_task_name, dataset.task_feature_lengths)
  if tuning.rank_loss and dataset.length_buckets:
    raise UsageError("LENGTH_BUCKETS cuts padded token batches, but the rank loss reads label "
                     "candidates: unset LENGTH_BUCKETS")
  if tuning.rank_loss and model.multitask_prompt is not None and model.multitask_prompt.task_source == "prompt_ids":
    raise UsageError("the rank loss's candidate batches carry no prompt_ids: set "
                     "MULTITASK_TASK_SOURCE = 'sentinel' and train on task_index_ tasks")
  if tuning.wayward_text is not None and not model_lib.has_plain_prompt(model):
    raise UsageError("WAYWARD_TEXT pulls the plain prompt (prompt/prompt) towards a text, but this model "
                     "has none (PROMPT_LENGTH 0, or a method computes the prompt): unset WAYWARD_TEXT")
  if tuning.wayward_text is not None and model.num_prompts:
    raise UsageError("WAYWARD_TEXT pulls one prompt towards a text, but the model holds a table of "
                     f"{model.num_prompts}: unset WAYWARD_TEXT or num_prompts")
  if exports_peft and model.multitask_prompt is not None:
    raise UsageError("PEFT_EXPORT writes one prompt per checkpoint, but a multi-task prompt holds one "
                     "per task: unset PEFT_EXPORT and export each task's prompt from prompt_best.npy "
                     "with scripts/export_task_prompts.py")


def task_prompt_ids(model: model_lib.PromptT5, mixture_or_task_name: str,
                    splits: tuple[str, ...]) -> Optional[dict[str, int]]:
  """For a multi-task prompt: each task of the mixture (on `splits`) -> the index of the task
  prompt its examples select, checked against the table; None for other models."""
  method = model.multitask_prompt
  if method is None:
    return None
  tasks = {t.name: t for split in splits for t in pipeline.leaf_tasks(mixture_or_task_name, split)}
  if method.task_source == "sentinel":
    ids = {name: registry.task_index_of(task) for name, task in tasks.items()}
    plain = sorted(name for name, i in ids.items() if i is None)
    if plain:
      raise UsageError(f"the multi-task prompt reads the task from the task-index sentinel, but task "
                       f"{plain[0]!r} has none: train on its task_index_ variant, or set "
                       "MULTITASK_TASK_SOURCE = 'prompt_ids' (the task's place in the mixture)")
  else:
    members = pipeline.member_ids(mixture_or_task_name)
    ids = {name: members[name] for name in tasks}
  outside = sorted((i, name) for name, i in ids.items() if i >= method.num_tasks)
  if outside:
    i, name = outside[-1]
    raise UsageError(f"task {name!r} selects task prompt {i}, outside the multi-task prompt's table "
                     f"of {method.num_tasks}: set NUM_TASKS to at least {i + 1}")
  return ids


def evaluation_prompt_ids(model: model_lib.PromptT5, mixture_or_task_name: str,
                          splits: tuple[str, ...]) -> Optional[dict[str, int]]:
  """What an Evaluator gives each task's batches as `prompt_ids`: for a multi-task prompt that
  reads the task from that feature, the task's index (`task_prompt_ids`); else None."""
  ids = task_prompt_ids(model, mixture_or_task_name, splits)
  method = model.multitask_prompt
  return ids if method is not None and method.task_source == "prompt_ids" else None


def prompt_exporter(model: model_lib.PromptT5) -> Callable:
  """trainable parameters -> what the run's prompt files hold (`prompted.exported_prompt`)."""
  return functools.partial(model_lib.exported_prompt, model)


def step_objective(tuning: TuningConfig) -> Optional[Callable]:
  """The train step's objective (None: T5X's token loss)."""
  if tuning.rank_loss is None:
    return None
  return functools.partial(rank_loss.rank_loss, kind=tuning.rank_loss, margin=float(tuning.rank_margin))


def wayward_target(model: model_lib.PromptT5, frozen_params, text: str) -> np.ndarray:
  """The embedding [P, d] of the text's tokens, one per prompt position; refused unless the text
  has exactly PROMPT_LENGTH tokens (the distance compares position by position)."""
  ids = prompts_lib.encode_text(None, text)
  if len(ids) != model.prompt_length:
    raise UsageError(f"WAYWARD_TEXT {text!r} has {len(ids)} tokens but the prompt has {model.prompt_length} "
                     f"positions: set PROMPT_LENGTH = {len(ids)} (the wayward distance compares them one by one)")
  embedding = np.asarray(multihost.fetch(frozen_params["token_embedder"]["embedding"]), np.float32)
  return embedding[ids]


def step_regularizer(tuning: TuningConfig, model: model_lib.PromptT5, frozen_params) -> Optional[Callable]:
  """The term the train step adds to the loss once per step (None: none)."""
  if tuning.wayward_text is None:
    return None
  target = wayward_target(model, frozen_params, tuning.wayward_text)
  return wayward.regularizer(target, float(tuning.wayward_gamma))


def export_task_prompts(table_path: str, out_dir: str, names: Optional[Sequence[str]] = None,
                        peft_source: Optional[str] = None) -> list[str]:
  """Writes each task's prompt of a multi-task prompt file [T, P, d] (a multi-task run's
  prompt_best.npy) as OUT_DIR/<name>.npy, and with `peft_source` (the run's MODEL_DIR or its
  frozen checkpoint) also as a PEFT adapter folder OUT_DIR/<name>/. `names` default to task_<t>,
  t the task index the run's examples selected."""
  try:
    table = prompt_io.load_prompt(table_path)
  except (ValueError, OSError) as err:
    raise UsageError(" ".join(str(err).split())) from None
  if table.ndim != 3:
    raise UsageError(f"{table_path} holds one prompt {table.shape}, not a table of task prompts "
                     "[tasks, length, d_model]: it needs no export")
  names = list(names) if names else [f"task_{t}" for t in range(len(table))]
  if len(names) != len(table) or len(set(names)) != len(names):
    raise UsageError(f"{table_path} holds {len(table)} task prompts: give as many distinct names, "
                     f"not {names}")
  taken = [p for n in names for p in (os.path.join(out_dir, f"{n}.npy"), os.path.join(out_dir, n))
           if os.path.exists(p)]
  if taken:
    raise UsageError(f"{taken[0]} already exists: choose a new output folder")
  written = []
  for name, prompt in zip(names, table):
    path = os.path.join(out_dir, f"{name}.npy")
    written.append(prompt_io.save_npy(path, prompt))
    if peft_source is not None:
      written.append(peft_export.export_peft(path, peft_source, os.path.join(out_dir, name)))
  return written
