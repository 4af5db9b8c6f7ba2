"""The eval and infer runs: a prompt file (or several) on a frozen checkpoint, outputs as JSONL.

`run_eval` and `run_infer` are what `python -m prompt_tuning.eval` / `infer` call with their
arguments bound in gin (configs/runs/prompt_eval.gin, prompt_infer.gin). Everything is checked
before anything is written to the output folder. PROMPT_FILE = None evaluates the checkpoint
without a prompt: a model-tuned one (scripts/export_checkpoint.py), or the bare backbone.
"""
from __future__ import annotations

import os
from typing import Callable, Mapping, Optional

import gin

import prompt_tuning.runs.configurables  # noqa: F401  the library's functions, for gin
from prompt_tuning.checkpoints import restore
from prompt_tuning.config import checks
from prompt_tuning.config.errors import UsageError
from prompt_tuning.model import prompted as model_lib
from prompt_tuning.parallel import multihost
from prompt_tuning.runs import backbone
from prompt_tuning.runs import ensemble
from prompt_tuning.runs import methods
from prompt_tuning.runs import metrics_writer
from prompt_tuning.runs import prompt_sources
from prompt_tuning.runs.evaluator import Evaluator


def _prompt_files(prompt_file, many: bool) -> list:
  """PROMPT_FILE as a list of existing files (several only where `many`: an ensemble); None:
  no prompt."""
  if prompt_file is None:
    return []
  if not prompt_file or prompt_file is gin.REQUIRED:
    raise UsageError("PROMPT_FILE is not set: add --gin.PROMPT_FILE=/path/prompt.npy")
  files = [prompt_sources.resolve(p) for p in ([prompt_file] if isinstance(prompt_file, str) else prompt_file)]
  trained = [f for f in files if restore.is_training_checkpoint(f)]
  if len(files) > 1 and trained:
    raise UsageError(f"PROMPT_FILE lists several files, and {trained[0]} is a training checkpoint: "
                     "ensembles and per-task prompts are prompt files (.npy or PEFT folders)")
  if len(files) > 1 and not many:
    raise UsageError("PROMPT_FILE lists several prompts: ensembles are evaluated by "
                                "prompt_tuning.eval; give inference one prompt file, or a "
                                "{task: file} dict for the tasks of a mixture")
  for path in files:
    if not os.path.exists(path):
      raise UsageError(f"prompt file {path!r} does not exist: set PROMPT_FILE to a .npy "
                                  "saved by training (MODEL_DIR/prompt_best.npy), a PEFT folder, "
                                  "the run's MODEL_DIR or one of its checkpoint_<step> folders")
  return files


def _fit(model, files: list):
  """`model` with the prompt length of `files`, or without a prompt when there are none."""
  return prompt_sources.fit_prompt_length(model, files) if files else model.clone(prompt_length=0)


def _with_table(model, size: int):
  """`model` with a table of `size` prompts in place of its one prompt (ensembles, per-task prompts)."""
  if model.num_prompts:
    raise UsageError("PROMPT_FILE gives several prompts, but the model already holds a "
                                "prompt table: use a model with one prompt (num_prompts=0)")
  return model.clone(num_prompts=size)


def _load(model, initial_checkpoint_path, files, mesh_shape, frozen_dtype, seed, table=False):
  """Frozen backbone + the prompt of one file (or with `table`, the prompt table of the files),
  checked before anything is written."""
  frozen = backbone.restore_backbone(model, initial_checkpoint_path, mesh_shape, frozen_dtype, seed)
  prompts = backbone.load_prompts(frozen, files)
  if not prompts:
    return frozen, {}
  return frozen, ensemble.prompt_table(prompts) if table else prompts[0]


def _check_settings(model, mixture_or_task_name, task_feature_lengths, batch_size, initial_checkpoint_path,
                    mesh_shape, frozen_dtype, seed, decode_fn) -> None:
  """The settings run_eval and run_infer share, checked before anything is read or written."""
  checks.check({"MODEL": model, "MIXTURE_OR_TASK_NAME": mixture_or_task_name, "TASK_FEATURE_LENGTHS": task_feature_lengths,
                "BATCH_SIZE": batch_size, "INITIAL_CHECKPOINT_PATH": initial_checkpoint_path,
                "MESH_SHAPE": mesh_shape, "FROZEN_DTYPE": frozen_dtype, "SEED": seed})
  checks.decoder(decode_fn)


def _inputs_text(example) -> str:
  return metrics_writer.jsonable(example.get("inputs_pretokenized", b""))


@gin.configurable(module="prompt_tuning.runs.eval_infer")
def run_eval(*, model=gin.REQUIRED, mixture_or_task_name: str = gin.REQUIRED,
             task_feature_lengths: Mapping[str, int] = gin.REQUIRED, batch_size: int = 32,
             initial_checkpoint_path: Optional[str] = gin.REQUIRED, prompt_file: str = gin.REQUIRED,
             output_dir: str = gin.REQUIRED, split: str = "validation",
             max_examples: Optional[int] = None, decode_fn: Optional[Callable] = None,
             mesh_shape=(-1, 1), frozen_dtype: Optional[str] = "float32", seed: int = 0) -> dict:
  """Evaluates a prompt file; writes output_dir/metrics.jsonl and per-task predictions.

  A list of prompt files is evaluated as an ensemble (`prompt_tuning.runs.ensemble`): each prompt,
  their average and best, and the majority vote, in one pass over the data.
  """
  output_dir = checks.output_folder(output_dir, "EVAL_OUTPUT_DIR", "/tmp/my_run/eval")
  _check_settings(model, mixture_or_task_name, task_feature_lengths, batch_size, initial_checkpoint_path,
                  mesh_shape, frozen_dtype, seed, decode_fn)
  checks.check({"EVAL_SPLIT": split, "EVAL_MAX_EXAMPLES": max_examples})
  files = _prompt_files(prompt_file, many=True)
  model = _fit(model, files)
  ensembled = len(files) > 1
  evaluator = Evaluator(_with_table(model, len(files)) if ensembled else model,
                        mixture_or_task_name, task_feature_lengths, split, batch_size,
                        max_examples, decode_fn, seed,
                        task_prompt_ids=methods.evaluation_prompt_ids(model, mixture_or_task_name, (split,)))
  frozen, prompt = _load(model, initial_checkpoint_path, files, mesh_shape, frozen_dtype, seed,
                         table=ensembled)
  if ensembled:
    metrics, outputs = ensemble.evaluate(evaluator, prompt, frozen.params)
  else:
    metrics, outputs = evaluator.evaluate(prompt, frozen.params)
  for data in evaluator.tasks:
    rows = ({"inputs": _inputs_text(e), "targets": metrics_writer.jsonable(e.get("targets_pretokenized", b"")),
             **(o if ensembled else {"output": o})} for e, o in zip(data.examples, outputs[data.task.name]))
    metrics_writer.write_jsonl(os.path.join(output_dir, f"{data.task.name}.{split}.predictions.jsonl"), rows)
  metrics_writer.write_jsonl(os.path.join(output_dir, "metrics.jsonl"), [{"prompt_file": prompt_file, **metrics}])
  if multihost.is_primary():
    for name, value in sorted(metrics.items()):
      print(f"{name}: {value:.4f}")
    for data in evaluator.tasks:
      print(f"{data.task.name}: majority-class baseline {data.majority:.1f}%")
  return metrics


@gin.configurable(module="prompt_tuning.runs.eval_infer")
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
  output_dir = checks.output_folder(output_dir, "INFER_OUTPUT_DIR", "/tmp/my_run/infer")
  _check_settings(model, mixture_or_task_name, task_feature_lengths, batch_size, initial_checkpoint_path,
                  mesh_shape, frozen_dtype, seed, decode_fn)
  checks.check({"INFER_SPLIT": split, "INFER_MAX_EXAMPLES": max_examples, "INFER_MODE": mode})
  per_task = dict(prompt_file) if isinstance(prompt_file, Mapping) else None
  model = _fit(model, _prompt_files(list(per_task.values()) if per_task else prompt_file, many=bool(per_task)))
  evaluator = Evaluator(_with_table(model, len(per_task)) if per_task else model,
                        mixture_or_task_name, task_feature_lengths, split, batch_size,
                        max_examples, decode_fn, seed,
                        task_prompt_ids=methods.evaluation_prompt_ids(model, mixture_or_task_name, (split,)))
  names = [data.task.name for data in evaluator.tasks]
  if per_task is not None and sorted(per_task) != sorted(names):
    raise UsageError(f"PROMPT_FILE names tasks {sorted(per_task)} but {mixture_or_task_name!r} "
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
        row["targets"] = metrics_writer.jsonable(e.get("targets_pretokenized", b""))
      rows.append(row)
    path = os.path.join(output_dir, f"{data.task.name}.{split}.{mode}.jsonl")
    metrics_writer.write_jsonl(path, rows)
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
