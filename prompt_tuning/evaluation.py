"""Evaluation of a prompt on a task: teacher-forced loss plus the task's own metrics.

Task metrics come from decoding (greedy by default, as in the paper; any function of
`prompt_tuning.decoding` bound in gin) or, for `*_rank_classification` tasks, from scoring every
label with `decoding.score`; either way the task's seqio postprocessor and metric functions turn
outputs into numbers. Metric names are `eval/<task>/<metric>`; `eval/score` is the mean of all
task metrics, the number early stopping and keep-best use.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import os
from typing import Any, Callable, Mapping, Optional, Sequence

import gin
import jax
import numpy as np
from jax.sharding import NamedSharding

from prompt_tuning import decoding
from prompt_tuning import ensemble
from prompt_tuning import gin_utils
from prompt_tuning import inputs as inputs_lib
from prompt_tuning import model as model_lib
from prompt_tuning import multihost
from prompt_tuning import partitioning
from prompt_tuning import train_step

SCORE_KEY = "eval/score"


@dataclasses.dataclass
class TaskData:
  task: Any
  examples: list
  is_ranked: bool
  majority: float


def decode_tokens(decode_fn: Callable, module, params, tokens, max_length: int, rng,
                  prompt_ids=None) -> jax.Array:
  """The best output [b, T] of any decoder of `prompt_tuning.decoding` (sampling gets `rng`)."""
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
               seed: int = 0):
    self.module, self.lengths, self.split, self.batch_size = module, dict(feature_lengths), split, batch_size
    tasks = inputs_lib.leaf_tasks(mixture_or_task_name, split)
    if not tasks:
      raise inputs_lib.UsageError(f"{mixture_or_task_name!r} has no {split!r} split to evaluate on")
    self.tasks = []
    for task in tasks:
      examples = inputs_lib.eval_examples(task, self.lengths, split, max_examples)
      ranked = bool(task.score_metric_fns) and not task.predict_metric_fns
      self.tasks.append(TaskData(task, examples, ranked, inputs_lib.majority_baseline(examples)))
    self.rng = jax.random.PRNGKey(seed)
    decode_fn = decode_fn or decoding.greedy
    targets_length = self.lengths["targets"]
    self._loss = jax.jit(functools.partial(train_step.eval_step, module=module))
    self._decode = jax.jit(lambda params, tokens, rng, prompt_ids: decode_tokens(
        decode_fn, module, params, tokens, targets_length, rng, prompt_ids))
    self._score = jax.jit(functools.partial(decoding.score, module))

  def _batches(self, examples: list):
    return inputs_lib.batched(examples, self.lengths, self.batch_size)

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

  def task_metrics(self, data: TaskData, outputs: list) -> dict:
    task = data.task
    post = task.postprocess_fn or (lambda x, example=None, is_target=False: x)
    targets = [post(e.get("targets_pretokenized", e["targets"]), example=e, is_target=True) for e in data.examples]
    results = {}
    if data.is_ranked:
      for fn in task.score_metric_fns:
        results.update(fn(targets, outputs))
    else:
      predictions = [post(o, example=e, is_target=False) for o, e in zip(outputs, data.examples)]
      for fn in task.predict_metric_fns:
        results.update(fn(targets, predictions))
    return {k: float(v) for k, v in results.items() if np.ndim(v) == 0}

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
      scores += list(task_values.values())
      outputs[name] = outs
    if scores:
      metrics[SCORE_KEY] = float(np.mean(scores))
    return metrics, outputs


# ----------------------------------------------------------------------------- entry points


def _prompt_files(prompt_file, many: bool) -> list:
  """PROMPT_FILE as a list of existing files (several only where `many`: an ensemble)."""
  if not prompt_file or prompt_file is gin.REQUIRED:
    raise inputs_lib.UsageError("PROMPT_FILE is not set: add --gin.PROMPT_FILE=/path/prompt.npy")
  files = [prompt_file] if isinstance(prompt_file, str) else list(prompt_file)
  if len(files) > 1 and not many:
    raise inputs_lib.UsageError("PROMPT_FILE lists several prompts: ensembles are evaluated by "
                                "prompt_tuning.eval; give inference one prompt file, or a "
                                "{task: file} dict for the tasks of a mixture")
  for path in files:
    if not os.path.exists(path):
      raise inputs_lib.UsageError(f"prompt file {path!r} does not exist: set PROMPT_FILE to a .npy "
                                  "saved by training (MODEL_DIR/prompt_best.npy) or a PEFT folder")
  return files


def _with_table(model, size: int):
  """`model` with a table of `size` prompts in place of its one prompt (ensembles, per-task prompts)."""
  if model.num_prompts:
    raise inputs_lib.UsageError("PROMPT_FILE gives several prompts, but the model already holds a "
                                "prompt table: use a model with one prompt (num_prompts=0)")
  return model.clone(num_prompts=size)


def _load(model, initial_checkpoint_path, files, mesh_shape, frozen_dtype, seed, table=False):
  """Frozen backbone + the prompt of one file (or with `table`, the prompt table of the files),
  checked before anything is written."""
  from prompt_tuning import trainer
  from prompt_tuning.checkpoints import restore
  frozen = trainer.restore_backbone(model, initial_checkpoint_path, mesh_shape, frozen_dtype, seed)
  try:
    prompts = [restore.restore_prompt(model, frozen.params, path=path) for path in files]
  except (ValueError, OSError) as err:
    raise inputs_lib.UsageError(" ".join(str(err).split())) from None
  return frozen, ensemble.prompt_table(prompts) if table else prompts[0]


def _write_jsonl(path: str, rows) -> None:
  """Writes `rows` atomically; in a multi-host job only the primary host writes."""
  if not multihost.is_primary():
    return
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    for row in rows:
      f.write(json.dumps(row, default=_jsonable) + "\n")
  os.replace(tmp, path)


def _jsonable(value):
  if isinstance(value, bytes):
    return value.decode("utf-8", "replace")
  if isinstance(value, np.ndarray):
    return value.tolist()
  return float(value) if np.ndim(value) == 0 else str(value)


def _inputs_text(example) -> str:
  return _jsonable(example.get("inputs_pretokenized", b""))


@gin.configurable(module="prompt_tuning.evaluation")
def run_eval(*, model=gin.REQUIRED, mixture_or_task_name: str = gin.REQUIRED,
             task_feature_lengths: Mapping[str, int] = gin.REQUIRED, batch_size: int = 32,
             initial_checkpoint_path: Optional[str] = gin.REQUIRED, prompt_file: str = gin.REQUIRED,
             output_dir: str = gin.REQUIRED, split: str = "validation",
             max_examples: Optional[int] = None, decode_fn: Optional[Callable] = None,
             mesh_shape=(-1, 1), frozen_dtype: Optional[str] = "float32", seed: int = 0) -> dict:
  """Evaluates a prompt file; writes output_dir/metrics.jsonl and per-task predictions.

  A list of prompt files is evaluated as an ensemble (`prompt_tuning.ensemble`): each prompt,
  their average and best, and the majority vote, in one pass over the data.
  """
  gin_utils.local_folder(output_dir, "EVAL_OUTPUT_DIR")
  files = _prompt_files(prompt_file, many=True)
  ensembled = len(files) > 1
  evaluator = Evaluator(_with_table(model, len(files)) if ensembled else model,
                        mixture_or_task_name, task_feature_lengths, split, batch_size,
                        max_examples, decode_fn, seed)
  frozen, prompt = _load(model, initial_checkpoint_path, files, mesh_shape, frozen_dtype, seed,
                         table=ensembled)
  if ensembled:
    metrics, outputs = ensemble.evaluate(evaluator, prompt, frozen.params)
  else:
    metrics, outputs = evaluator.evaluate(prompt, frozen.params)
  for data in evaluator.tasks:
    rows = ({"inputs": _inputs_text(e), "targets": _jsonable(e.get("targets_pretokenized", b"")),
             **(o if ensembled else {"output": o})} for e, o in zip(data.examples, outputs[data.task.name]))
    _write_jsonl(os.path.join(output_dir, f"{data.task.name}.{split}.predictions.jsonl"), rows)
  _write_jsonl(os.path.join(output_dir, "metrics.jsonl"), [{"prompt_file": prompt_file, **metrics}])
  if multihost.is_primary():
    for name, value in sorted(metrics.items()):
      print(f"{name}: {value:.4f}")
    for data in evaluator.tasks:
      print(f"{data.task.name}: majority-class baseline {data.majority:.1f}%")
  return metrics


@gin.configurable(module="prompt_tuning.evaluation")
def run_infer(*, model=gin.REQUIRED, mixture_or_task_name: str = gin.REQUIRED,
              task_feature_lengths: Mapping[str, int] = gin.REQUIRED, batch_size: int = 32,
              initial_checkpoint_path: Optional[str] = gin.REQUIRED, prompt_file=gin.REQUIRED,
              output_dir: str = gin.REQUIRED, mode: str = "predict", split: str = "validation",
              max_examples: Optional[int] = None, decode_fn: Optional[Callable] = None,
              mesh_shape=(-1, 1), frozen_dtype: Optional[str] = "float32", seed: int = 0) -> list:
  """Writes predictions (mode 'predict') or target log-likelihoods ('score') as JSONL.

  `prompt_file` is one file, or a {task: file} dict giving each task of a mixture its own
  prompt: the prompts then form one table and every batch mixes the tasks' examples, each with
  its task's prompt (one frozen model serving many tasks at once).
  """
  gin_utils.local_folder(output_dir, "INFER_OUTPUT_DIR")
  if mode not in ("predict", "score"):
    raise inputs_lib.UsageError(f"INFER_MODE must be 'predict' or 'score', not {mode!r}")
  per_task = dict(prompt_file) if isinstance(prompt_file, Mapping) else None
  evaluator = Evaluator(_with_table(model, len(per_task)) if per_task else model,
                        mixture_or_task_name, task_feature_lengths, split, batch_size,
                        max_examples, decode_fn, seed)
  names = [data.task.name for data in evaluator.tasks]
  if per_task is not None and sorted(per_task) != sorted(names):
    raise inputs_lib.UsageError(f"PROMPT_FILE names tasks {sorted(per_task)} but {mixture_or_task_name!r} "
                                f"has {sorted(names)} on {split!r}: give one prompt file per task")
  files = _prompt_files([per_task[n] for n in names] if per_task else prompt_file, many=bool(per_task))
  frozen, prompt = _load(model, initial_checkpoint_path, files, mesh_shape, frozen_dtype, seed,
                         table=bool(per_task))
  params = model_lib.merge(prompt, frozen.params)
  for data in evaluator.tasks:
    data.is_ranked = mode == "score"
  outputs = _mixed_outputs(evaluator, params) if per_task else {
      data.task.name: evaluator.outputs(data, params)[1] for data in evaluator.tasks}
  written = []
  key = "score" if mode == "score" else "prediction"
  for data in evaluator.tasks:
    rows = []
    for e, o in zip(data.examples, outputs[data.task.name]):
      row = {"inputs": _inputs_text(e), key: o}
      if mode == "score":
        row["targets"] = _jsonable(e.get("targets_pretokenized", b""))
      rows.append(row)
    path = os.path.join(output_dir, f"{data.task.name}.{split}.{mode}.jsonl")
    _write_jsonl(path, rows)
    written.append(path)
    if multihost.is_primary():
      print(f"wrote {len(rows)} lines to {path}")
  return written


def _mixed_outputs(evaluator: Evaluator, params) -> dict:
  """Every task's outputs from batches that interleave the tasks (task i uses prompt i)."""
  order = [(t, j) for j in range(max(len(d.examples) for d in evaluator.tasks))
           for t, d in enumerate(evaluator.tasks) if j < len(d.examples)]
  examples = [evaluator.tasks[t].examples[j] for t, j in order]
  vocabulary = evaluator.tasks[0].task.output_features["targets"].vocabulary
  flat = evaluator.outputs_with_prompts(params, examples, [t for t, _ in order],
                                        evaluator.tasks[0].is_ranked, vocabulary)
  outputs = {d.task.name: [None] * len(d.examples) for d in evaluator.tasks}
  for (t, j), value in zip(order, flat):
    outputs[evaluator.tasks[t].task.name][j] = value
  return outputs
