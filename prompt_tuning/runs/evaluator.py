"""Evaluation of a prompt on a task: teacher-forced loss plus the task's own metrics.

Task metrics come from decoding (greedy by default, as in the paper; any function of
`prompt_tuning.model.decoding` bound in gin) or, for `*_rank_classification` tasks, from scoring every
label with `decoding.score`; either way the task's seqio postprocessor and metric functions turn
outputs into numbers. Metric names are `eval/<task>/<metric>`; `eval/score` is the mean of the
metrics of the scored tasks (all of them, or those `score_tasks` names), the number early
stopping and keep-best use.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import numpy as np
from jax.sharding import NamedSharding

from prompt_tuning.config.errors import UsageError
from prompt_tuning.data import pipeline
from prompt_tuning.model import decoding
from prompt_tuning.model import prompted as model_lib
from prompt_tuning.parallel import multihost
from prompt_tuning.parallel import partitioning
from prompt_tuning.training import step as train_step

SCORE_KEY = "eval/score"


@dataclasses.dataclass
class TaskData:
  task: Any
  examples: list
  is_ranked: bool
  majority: float


def decode_tokens(decode_fn: Callable, module, params, tokens, max_length: int, rng,
                  prompt_ids=None) -> jax.Array:
  """The best output [b, T] of any decoder of `prompt_tuning.model.decoding` (sampling gets `rng`)."""
  kwargs = {"rng": rng} if "rng" in inspect.signature(decode_fn).parameters else {}
  out = decode_fn(module, params, tokens, max_length, prompt_ids=prompt_ids, **kwargs)[0]
  return out[:, 0] if out.ndim == 3 else out


def _text(vocabulary, ids: np.ndarray) -> str:
  ids = list(np.asarray(ids))
  if 1 in ids:
    ids = ids[:ids.index(1)]
  return vocabulary.decode([int(i) for i in ids if i > 0])


def _placed(batch: dict, frozen) -> dict:
  """The batch split over the data axis of the frozen weights' mesh (replicated if the rows do
  not divide evenly); in a multi-host job each host places only its own rows."""
  sharding = getattr(jax.tree.leaves(frozen)[0], "sharding", None)
  if not isinstance(sharding, NamedSharding):
    return batch
  mesh, rows = sharding.mesh, len(batch["encoder_input_tokens"])
  split = rows % mesh.shape["data"] == 0
  target = partitioning.batch_sharding(mesh) if split else partitioning.replicated(mesh)
  return {k: multihost.global_array(v, target) for k, v in batch.items()}


class Evaluator:
  """Holds the eval examples of every task of a mixture and the jitted model functions."""

  def __init__(self, module: model_lib.PromptT5, mixture_or_task_name: str,
               feature_lengths: Mapping[str, int], split: str = "validation", batch_size: int = 32,
               max_examples: Optional[int] = None, decode_fn: Optional[Callable] = None,
               seed: int = 0, score_tasks: Optional[Sequence[str]] = None,
               task_prompt_ids: Optional[Mapping[str, int]] = None):
    """`score_tasks` (None: every task) are the tasks whose metrics make `eval/score`; the others
    are evaluated and reported but do not choose the best checkpoint. `task_prompt_ids` (task ->
    prompt index) gives every batch of a task that `prompt_ids` (a multi-task prompt's tasks)."""
    self.task_prompt_ids = dict(task_prompt_ids) if task_prompt_ids else None
    self.module, self.lengths, self.split, self.batch_size = module, dict(feature_lengths), split, batch_size
    tasks = pipeline.leaf_tasks(mixture_or_task_name, split)
    if not tasks:
      raise UsageError(f"{mixture_or_task_name!r} has no {split!r} split to evaluate on")
    names = [t.name for t in tasks]
    unknown = sorted(set(score_tasks or ()) - set(names))
    if unknown:
      raise UsageError(f"EVAL_SCORE_TASKS names {unknown}, which {mixture_or_task_name!r} does not "
                       f"evaluate on {split!r}: choose among {names}")
    self.score_tasks = list(score_tasks) if score_tasks else names
    self.tasks = []
    for task in tasks:
      examples = pipeline.eval_examples(task, self.lengths, split, max_examples)
      ranked = bool(task.score_metric_fns) and not task.predict_metric_fns
      self.tasks.append(TaskData(task, examples, ranked, pipeline.majority_baseline(examples)))
    self.rng = jax.random.PRNGKey(seed)
    decode_fn = decode_fn or decoding.greedy
    targets_length = self.lengths["targets"]
    self._loss = jax.jit(functools.partial(train_step.eval_step, module=module))
    self._decode = jax.jit(lambda params, tokens, rng, prompt_ids: decode_tokens(
        decode_fn, module, params, tokens, targets_length, rng, prompt_ids))
    self._score = jax.jit(functools.partial(decoding.score, module))

  def _batches(self, examples: list):
    return pipeline.batched(examples, self.lengths, self.batch_size)

  def _predict(self, params, batch: dict, ranked: bool, vocabulary, index: int) -> list:
    """Score (ranked) or decoded text of every row of a placed batch."""
    if ranked:
      return list(multihost.fetch(self._score(params, batch)))
    rng = jax.random.fold_in(self.rng, index)
    tokens = multihost.fetch(self._decode(params, batch["encoder_input_tokens"], rng,
                                          batch.get("prompt_ids")))
    return [_text(vocabulary, row) for row in tokens]

  def outputs(self, data: TaskData, params) -> tuple[dict, list]:
    """(loss stats summed over the split, per-example outputs: text or score) of one prompt."""
    totals, outputs = {"loss": 0.0, "num_tokens": 0.0, "correct": 0.0}, []
    vocabulary = data.task.output_features["targets"].vocabulary
    prompt, frozen = model_lib.split(params)
    for i, (batch, n) in enumerate(self._batches(data.examples)):
      if self.task_prompt_ids is not None:
        rows = len(batch["encoder_input_tokens"])
        batch["prompt_ids"] = np.full(rows, self.task_prompt_ids[data.task.name], np.int32)
      batch = _placed(batch, frozen)
      stats = multihost.fetch(self._loss(prompt, frozen, batch))
      totals["loss"] += float(stats["cross_ent_per_token"]) * float(stats["num_tokens"])
      totals["correct"] += float(stats["accuracy"]) * float(stats["num_tokens"])
      totals["num_tokens"] += float(stats["num_tokens"])
      outputs += self._predict(params, batch, data.is_ranked, vocabulary, i)[:n]
    return totals, outputs

  def outputs_with_prompts(self, params, examples: list, prompt_ids: Sequence[int], ranked: bool,
                           vocabulary) -> list:
    """Per example its output (text or score) under its own prompt of the model's prompt table:
    one batch mixes examples of any prompts, so one frozen model serves them all at once."""
    frozen = model_lib.split(params)[1]
    ids = np.asarray(prompt_ids, np.int32)
    outputs = []
    for i, (batch, n) in enumerate(self._batches(examples)):
      rows = np.zeros(len(batch["encoder_input_tokens"]), np.int32)  # padding rows: prompt 0
      rows[:n] = ids[i * self.batch_size:i * self.batch_size + n]
      batch = _placed({**batch, "prompt_ids": rows}, frozen)
      outputs += self._predict(params, batch, ranked, vocabulary, i)[:n]
    return outputs

  def _postprocessed(self, data: TaskData, outputs: list) -> tuple[list, list]:
    """(targets, predictions) as the task's metric functions take them: postprocessed target
    strings, and postprocessed decoded outputs (or, for ranked tasks, the scores as they are)."""
    post = data.task.postprocess_fn or (lambda x, example=None, is_target=False: x)
    targets = [post(e.get("targets_pretokenized", e["targets"]), example=e, is_target=True) for e in data.examples]
    if data.is_ranked:
      return targets, list(outputs)
    return targets, [post(o, example=e, is_target=False) for o, e in zip(outputs, data.examples)]

  def task_metrics(self, data: TaskData, outputs: list) -> dict:
    targets, predictions = self._postprocessed(data, outputs)
    results = {}
    for fn in data.task.score_metric_fns if data.is_ranked else data.task.predict_metric_fns:
      results.update(fn(targets, predictions))
    return {k: float(v) for k, v in results.items() if np.ndim(v) == 0}

  def inference_rows(self, data: TaskData, outputs: list) -> list[dict]:
    """One row per example as T5X's inference evaluation writes them (seqio's JSONLogger): the
    preprocessed example as `input`, the postprocessed `target`, and the postprocessed
    `prediction` (decoded tasks) or the `score` (ranked ones)."""
    targets, predictions = self._postprocessed(data, outputs)
    key = "score" if data.is_ranked else "prediction"
    return [{"input": example, "target": target, key: prediction}
            for example, target, prediction in zip(data.examples, targets, predictions)]

  def evaluate(self, prompt, frozen) -> tuple[dict, dict]:
    """(metrics, per-task outputs) of the prompted model on every task's split."""
    params = model_lib.merge(prompt, frozen)
    metrics, outputs, scores = {}, {}, []
    for data in self.tasks:
      totals, outs = self.outputs(data, params)
      name = data.task.name
      tokens = max(totals["num_tokens"], 1.0)
      metrics[f"eval/{name}/loss"] = totals["loss"] / tokens
      metrics[f"eval/{name}/token_accuracy"] = totals["correct"] / tokens
      task_values = self.task_metrics(data, outs)
      metrics.update({f"eval/{name}/{k}": v for k, v in task_values.items()})
      if name in self.score_tasks:
        scores += list(task_values.values())
      outputs[name] = outs
    if scores:
      metrics[SCORE_KEY] = float(np.mean(scores))
    return metrics, outputs
