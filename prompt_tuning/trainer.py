"""The prompt-tuning loop: restore the frozen model, tune the prompt, evaluate, keep the best.

`train(...)` is what `python -m prompt_tuning.train` calls with its arguments bound in gin (see
configs/runs/prompt_finetune.gin). Everything the user can get wrong (task, checkpoint, prompt
file, shapes, settings) is checked before anything is written to MODEL_DIR; then MODEL_DIR gets
  config.gin        the parsed gin config of this run,
  metrics.jsonl     one JSON object per line: {"step", "train/loss", "eval/<task>/<metric>", ...},
  tensorboard/      the same scalars for TensorBoard,
  checkpoint_<step>/  prompt + optimizer state + data position (resuming continues from the latest),
  prompts/prompt_<step>.npy  every saved prompt; prompt_best.npy is the early-stopping choice.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import gin
import jax

from prompt_tuning import gin_utils
from prompt_tuning import metrics_writer
from prompt_tuning import model as model_lib
from prompt_tuning import multihost
from prompt_tuning import optim
from prompt_tuning import packing
from prompt_tuning import partitioning
from prompt_tuning import prompts as prompts_lib
from prompt_tuning import train_step
from prompt_tuning.gin_utils import UsageError


@dataclasses.dataclass
class Frozen:
  """The restored backbone and the layout it lives in."""
  module: model_lib.PromptT5
  params: Any
  mesh: Any
  rules: Any


def _require(value, macro: str, example: str):
  if value is None or value is gin.REQUIRED:
    raise UsageError(f"{macro} is not set: add --gin.{macro}={example} or bind it in a gin file")
  return value


def restore_backbone(module: model_lib.PromptT5, checkpoint_path: Optional[str],
                     mesh_shape: Sequence[int] = (-1, 1), dtype: Optional[str] = "float32",
                     seed: int = 0) -> Frozen:
  """The frozen weights from a T5X / Hugging Face checkpoint, or random ones when path is None."""
  from prompt_tuning.checkpoints import restore
  try:
    mesh = partitioning.create_mesh(tuple(mesh_shape))
  except ValueError as err:
    raise UsageError(str(err)) from None
  rules = partitioning.logical_rules()
  if checkpoint_path is None:
    print("warning: INITIAL_CHECKPOINT_PATH is None: the frozen model is RANDOM (tests only)")
    params = train_step.init_random_frozen(module, jax.random.PRNGKey(seed), mesh, rules, dtype)
    return Frozen(module, params, mesh, rules)
  if not os.path.exists(checkpoint_path) and "://" not in checkpoint_path:
    raise UsageError(f"checkpoint {checkpoint_path!r} does not exist: set INITIAL_CHECKPOINT_PATH to a "
                     "T5X checkpoint folder (checkpoint_<step>) or a Hugging Face T5 folder")
  try:
    params = restore.restore_frozen(module, checkpoint_path, mesh=mesh, rules=rules, dtype=dtype)
  except (ValueError, FileNotFoundError, OSError) as err:
    raise UsageError(f"cannot restore {checkpoint_path}: {' '.join(str(err).split())}") from None
  return Frozen(module, params, mesh, rules)


def initial_prompt(frozen: Frozen, prompt_init: Optional[prompts_lib.Initializer], seed: int) -> dict:
  """The prompt's starting value (checked against the model's prompt shape)."""
  try:
    prompt = model_lib.init_prompt(frozen.module, prompt_init or prompts_lib.random_uniform(),
                                   jax.random.PRNGKey(seed), frozen.params)
  except (ValueError, FileNotFoundError, OSError) as err:
    raise UsageError(" ".join(str(err).split())) from None
  return jax.device_put(prompt, partitioning.replicated(frozen.mesh))


_MAX_PENDING = 10  # steps between host syncs at most (bounds how late a NaN is noticed)


class _Averager:
  """Means of per-step train statistics between two log lines."""

  def __init__(self):
    self.sums, self.count, self.examples, self.start = {}, 0, 0, time.time()

  def add(self, stats: Mapping[str, float], examples: int) -> None:
    for k, v in stats.items():
      self.sums[k] = self.sums.get(k, 0.0) + float(v)
    self.count += 1
    self.examples += examples

  def flush(self) -> dict:
    seconds = max(time.time() - self.start, 1e-9)
    out = {f"train/{k}": v / max(self.count, 1) for k, v in self.sums.items() if k != "num_tokens"}
    out["train/steps_per_second"] = self.count / seconds
    out["train/examples_per_second"] = self.examples / seconds  # packed rows count each example
    self.__init__()
    return out


def _check_finite(step: int, stats: Mapping[str, float], last_checkpoint: Optional[int]) -> None:
  loss = float(stats["loss"])
  if not math.isfinite(loss):
    resume = f"checkpoint_{last_checkpoint} is the last good state" if last_checkpoint else "no checkpoint was saved"
    raise UsageError(f"training stopped: the loss is {loss} at step {step} ({resume}); lower "
                     "LEARNING_RATE or check the inputs for empty targets")


def _summary_lines(metrics: Mapping[str, float], evaluator, step: Optional[int]) -> list[str]:
  lines = []
  for data in evaluator.tasks:
    value = metrics.get(f"eval/{data.task.name}/accuracy")
    if value is not None:
      lines.append(f"{data.task.name}: {evaluator.split} accuracy {value:.1f}% "
                   f"(majority-class baseline {data.majority:.1f}%) at step {step}")
  return lines


@gin.configurable(module="prompt_tuning.trainer")
def train(*, model: model_lib.PromptT5 = gin.REQUIRED, mixture_or_task_name: str = gin.REQUIRED,
          task_feature_lengths: Mapping[str, int] = gin.REQUIRED, train_steps: int = gin.REQUIRED,
          batch_size: int = gin.REQUIRED, model_dir: str = gin.REQUIRED,
          initial_checkpoint_path: Optional[str] = gin.REQUIRED,
          prompt_init: Optional[prompts_lib.Initializer] = None, optimizer=None,
          mesh_shape: Sequence[int] = (-1, 1), frozen_dtype: Optional[str] = "float32", seed: int = 0,
          num_microbatches: int = 1, z_loss: float = 1e-4, eval_period: int = 1000,
          checkpoint_period: int = 1000, log_period: int = 100, eval_split: str = "validation",
          eval_max_examples: Optional[int] = None, eval_batch_size: Optional[int] = None,
          decode_fn: Optional[Callable] = None, keep_checkpoints: int = 1,
          early_stopping_patience: Optional[int] = None, progress_bar: Optional[bool] = None,
          length_buckets: Optional[Sequence[int]] = None, pack: bool = False) -> dict:
  """Tunes the prompt for `train_steps` steps (counted from the start of prompt tuning).

  Evaluates every `eval_period` steps and at the end; keeps the `keep_checkpoints` best
  checkpoints by `eval/score` (plus the latest); stops after `early_stopping_patience`
  evaluations without improvement (None: never). `length_buckets` (e.g. (64, 128, 256, 512))
  cuts each training batch's input padding to the smallest bucket that fits it; `pack` packs
  several examples into each row instead, each with its own prompt copy (a step then sees more
  than `batch_size` examples). Returns the best evaluation's metrics.
  """
  from prompt_tuning import evaluation, inputs as inputs_lib
  from prompt_tuning.checkpoints import state as state_lib
  model_dir = gin_utils.local_folder(_require(model_dir, "MODEL_DIR", "/tmp/my_run"), "MODEL_DIR")
  _require(mixture_or_task_name, "MIXTURE_OR_TASK_NAME", "taskless_super_glue_rte_v102")
  if int(train_steps) < 1 or int(batch_size) < 1:
    raise UsageError(f"TRAIN_STEPS ({train_steps}) and BATCH_SIZE ({batch_size}) must be positive")
  if batch_size % num_microbatches:
    raise UsageError(f"BATCH_SIZE {batch_size} is not divisible by num_microbatches={num_microbatches}")
  if pack and (length_buckets or model.placement != "prefix" or model.num_prompts):
    raise UsageError("PACK = True needs the prefix placement, one shared prompt and no "
                     "LENGTH_BUCKETS (packing already removes the padding): unset one of them")

  # ---------------------------------------------------------------- validate and build (no writes)
  evaluator = evaluation.Evaluator(model, mixture_or_task_name, task_feature_lengths, eval_split,
                                   eval_batch_size or batch_size, eval_max_examples, decode_fn, seed)
  frozen = restore_backbone(model, initial_checkpoint_path, mesh_shape, frozen_dtype, seed)
  tx = optimizer or optim.adafactor()
  state = train_step.TrainState.create(initial_prompt(frozen, prompt_init, seed), tx)
  state_shardings = train_step.state_shardings(state, frozen.mesh)
  state = jax.device_put(state, state_shardings)
  _, frozen_shardings = train_step.shardings(model, frozen.mesh, frozen.rules)
  step_fn = train_step.partitioned_train_step(model, tx, frozen.mesh, frozen.rules, frozen_shardings,
                                              state_shardings, donate=True,
                                              num_microbatches=num_microbatches, z_loss=z_loss)

  # ---------------------------------------------------------------- MODEL_DIR: resume or start
  checkpointer = state_lib.TrainCheckpointer(model_dir, keep=keep_checkpoints,
                                             keep_best_metric=evaluation.SCORE_KEY,
                                             frozen_checkpoint=initial_checkpoint_path)
  restored = checkpointer.restore_latest(state)
  start, position = 0, 0
  primary = multihost.is_primary()  # the host that writes files and prints
  say = print if primary else (lambda *_: None)
  if restored is not None:
    state, start, position = restored.state, restored.step, int(restored.data_state.get("position", 0))
    say(f"resuming from {checkpointer.path(start)} (step {start})")
  if primary:
    gin_utils.write_config(model_dir)
  writer = metrics_writer.MetricsWriter(model_dir, enabled=primary)
  best, evals_without_gain = _early_stopping_state(restored)
  batches = inputs_lib.train_batches(mixture_or_task_name, task_feature_lengths, batch_size, seed,
                                     position=position, length_buckets=length_buckets,
                                     pack_prompt_length=model.prompt_length if pack else None)
  dropout_rng = jax.random.PRNGKey(seed + 1)

  # ---------------------------------------------------------------- loop
  progress = metrics_writer.Progress(train_steps, start, batch_size, progress_bar if primary else False)
  note = progress.write if primary else (lambda *_: None)
  averager, step = _Averager(), start
  last_saved = checkpointer.latest_step()
  pending = []  # (step, on-device stats, examples): fetched in groups so the host never waits per step
  loss = None

  def drain():
    nonlocal loss
    for pending_step, stats, examples in multihost.fetch(pending):
      _check_finite(pending_step, stats, last_saved)  # before any save of that state
      averager.add(stats, examples)
      loss = float(stats["cross_ent_per_token"])
    pending.clear()

  try:
    while step < train_steps:
      batch = next(batches)
      state, stats = step_fn(state, frozen.params, batch, dropout_rng)
      step += 1
      pending.append((step, stats, packing.num_examples(batch)))
      is_eval = step % eval_period == 0 or step == train_steps
      is_log = step % log_period == 0 or step == train_steps
      if is_log or is_eval or step % checkpoint_period == 0 or len(pending) >= _MAX_PENDING:
        drain()
      progress.update(step, loss)
      if is_log:
        writer.write(step, averager.flush())
      metrics = {}
      if is_eval:
        metrics = evaluator.evaluate(state.prompt, frozen.params)[0]
        writer.write(step, metrics)
        note(f"step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items())))
        if best is None or metrics.get(evaluation.SCORE_KEY, -math.inf) > best[1].get(evaluation.SCORE_KEY, -math.inf):
          best, evals_without_gain = (step, metrics), 0
          if primary:
            prompt_io_save(model_dir, state.prompt)
        else:
          evals_without_gain += 1
      if step % checkpoint_period == 0 or step == train_steps or (
          early_stopping_patience and evals_without_gain >= early_stopping_patience):
        data_state = {"position": position + step - start, "evals_without_gain": evals_without_gain,
                      "best_step": best[0] if best else None, "best_metrics": best[1] if best else {}}
        checkpointer.save(step, state, data_state, metrics)
        last_saved = step
      if early_stopping_patience and evals_without_gain >= early_stopping_patience:
        note(f"early stopping at step {step}: no gain in {evals_without_gain} evaluations")
        break
  finally:
    progress.close()
    writer.close()
  best_step, best_metrics = best if best else (step, {})
  for line in _summary_lines(best_metrics, evaluator, best_step):
    say(line)
  say(f"done: {step} steps; best {evaluation.SCORE_KEY} "
        f"{best_metrics.get(evaluation.SCORE_KEY, float('nan')):.2f} at step {best_step}; outputs in {model_dir}")
  return {"step": step, "best_step": best_step, **best_metrics}


def prompt_io_save(model_dir: str, prompt) -> None:
  from prompt_tuning.checkpoints import prompt_io
  prompt_io.save_npy(os.path.join(model_dir, "prompt_best.npy"), prompt)


def _early_stopping_state(restored) -> tuple[Optional[tuple[int, dict]], int]:
  """(best evaluation as (step, metrics), evaluations since it) as the resumed checkpoint saved
  them, so that a restarted run keeps and stops where the uninterrupted one would."""
  data = restored.data_state if restored is not None else {}
  best = (int(data["best_step"]), dict(data["best_metrics"])) if data.get("best_step") is not None else None
  return best, int(data.get("evals_without_gain", 0))
