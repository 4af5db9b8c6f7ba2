"""The tuning loop: restore the backbone, tune what TRAINABLE selects, evaluate, keep the best.

Prompt tuning (the default), partial tuning and model tuning are the same loop and the same
train step; only the TRAINABLE patterns (`prompt_tuning.runs.settings.TuningConfig`) differ.

`train(...)` is what `python -m prompt_tuning.train` calls with its arguments bound in gin (see
configs/runs/prompt_finetune.gin and the setting records of `prompt_tuning.runs.settings`).
Everything the user can get wrong (task, checkpoint, prompt file, shapes, settings) is checked
before anything is written to MODEL_DIR; then MODEL_DIR gets
  config.gin        the parsed gin config of this run,
  metrics.jsonl     one JSON object per line: {"step", "train/loss", "eval/<task>/<metric>", ...},
  tensorboard/      the same scalars for TensorBoard,
  inference_eval/   T5X's per-evaluation files: <task>-<step>.jsonl (input, target, prediction),
                    <task>-metrics.jsonl,
  checkpoint_<step>/  trainable parameters + optimizer state + data position (resuming continues
                    from the latest),
  prompts/prompt_<step>.npy  every saved prompt, when a prompt trains (and prompts/peft_<step>/
                    with PEFT_EXPORT = True); prompt_best.npy is the early-stopping choice.
"""
from __future__ import annotations

import math
import os
import time
from typing import Mapping, Optional, Sequence

import gin
import jax

import prompt_tuning.runs.configurables  # noqa: F401  the library's functions, for gin
from prompt_tuning.checkpoints import finite
from prompt_tuning.checkpoints import prompt_io
from prompt_tuning.checkpoints import state as state_lib
from prompt_tuning.config import checks
from prompt_tuning.config import gin_config
from prompt_tuning.config.errors import UsageError
from prompt_tuning.data import pipeline
from prompt_tuning.model import params as params_lib
from prompt_tuning.model import prompted as model_lib
from prompt_tuning.model import prompts as prompts_lib
from prompt_tuning.parallel import multihost
from prompt_tuning.runs import backbone
from prompt_tuning.runs import evaluator as evaluator_lib
from prompt_tuning.runs import label_check
from prompt_tuning.runs import methods
from prompt_tuning.runs import metrics_writer
from prompt_tuning.runs import run_folder
from prompt_tuning.runs import peft_export
from prompt_tuning.runs.settings import DatasetConfig
from prompt_tuning.runs.settings import EvaluationConfig
from prompt_tuning.runs.settings import RestoreCheckpointConfig
from prompt_tuning.runs.settings import SaveCheckpointConfig
from prompt_tuning.runs.settings import TuningConfig
from prompt_tuning.training import optim
from prompt_tuning.training import packing
from prompt_tuning.training import step as train_step

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


def _last_good(last_checkpoint: Optional[int]) -> str:
  return (f"checkpoint_{last_checkpoint} is the last finite state" if last_checkpoint
          else "no checkpoint was saved")


def _check_finite(step: int, stats: Mapping[str, float], last_checkpoint: Optional[int]) -> None:
  loss = float(stats["loss"])
  if not math.isfinite(loss):
    raise UsageError(f"training stopped: the loss is {loss} at step {step} ({_last_good(last_checkpoint)}); "
                     "lower LEARNING_RATE or check the inputs for empty targets")


def _check_state(step: int, state, last_checkpoint: Optional[int]) -> None:
  """The state updated by step `step`, checked before anything of it is saved: the loss of a
  step is computed before its update, so a finite loss does not make the new state finite."""
  bad = finite.nonfinite(state)
  if bad:
    raise UsageError(f"training stopped: {', '.join(bad[:3])} holds NaN or infinite values after the "
                     f"update of step {step}, nothing of it was saved ({_last_good(last_checkpoint)}); "
                     "lower LEARNING_RATE")


def score_of(metrics: Mapping[str, Optional[float]]) -> float:
  """The evaluation's `eval/score` for choosing the best: a NaN or missing score (e.g. STS-B's
  correlation of a constant prediction) is worse than any number."""
  value = metrics.get(evaluator_lib.SCORE_KEY)
  return -math.inf if value is None or math.isnan(value) else float(value)


def _summary_lines(metrics: Mapping[str, float], evaluator, step: Optional[int]) -> list[str]:
  lines = []
  for data in evaluator.tasks:
    value = metrics.get(f"eval/{data.task.name}/accuracy")
    if value is not None:
      lines.append(f"{data.task.name}: {evaluator.split} accuracy {value:.1f}% "
                   f"(majority-class baseline {data.majority:.1f}%) at step {step}")
  return lines


@gin.configurable(module="prompt_tuning.runs.train_loop")
def train(*, model: model_lib.PromptT5 = gin.REQUIRED, dataset: DatasetConfig = gin.REQUIRED,
          restore: RestoreCheckpointConfig = gin.REQUIRED, model_dir: str = gin.REQUIRED,
          train_steps: int = gin.REQUIRED, checkpoint: SaveCheckpointConfig = SaveCheckpointConfig(),
          evaluation: EvaluationConfig = EvaluationConfig(), tuning: TuningConfig = TuningConfig(),
          prompt_init: Optional[prompts_lib.Initializer] = None, optimizer=None,
          mesh_shape: Sequence[int] = (-1, 1), parameter_partitioning_dims: int = 1, seed: int = 0, num_microbatches: int = 1,
          z_loss: float = 1e-4, log_period: int = 100, progress_bar: Optional[bool] = None,
          overwrite: bool = False) -> dict:
  """Tunes what `tuning.trainable` selects for `train_steps` steps (counted from the start of tuning).

  Reads `dataset`, starts from the backbone of `restore`, evaluates and checkpoints as
  `evaluation` and `checkpoint` say (see `prompt_tuning.runs.settings`), and keeps the best
  evaluation's checkpoint (and prompt). `seed` sets the prompt's initialization, the data order
  and dropout. An existing MODEL_DIR is resumed only when it holds this run
  (`prompt_tuning.runs.run_folder`); `overwrite` moves what it holds aside and starts afresh.
  Returns the best evaluation's metrics.
  """
  model_dir = checks.output_folder(model_dir, "MODEL_DIR")
  checks.require(dataset.mixture_or_task_name, "MIXTURE_OR_TASK_NAME", "taskless_super_glue_rte_v102")
  checks.check({"TRAIN_STEPS": train_steps, "NUM_MICROBATCHES": num_microbatches, "LOG_PERIOD": log_period,
                "SEED": seed, "Z_LOSS": z_loss, "MESH_SHAPE": mesh_shape,
                "PARAMETER_PARTITIONING_DIMS": parameter_partitioning_dims, "PROMPT_INIT": prompt_init,
                "MODEL": model, "OPTIMIZER": optimizer, "OVERWRITE": overwrite})
  patterns = [tuning.trainable] if isinstance(tuning.trainable, str) else list(tuning.trainable)
  if all(p.startswith(model_lib.PROMPT_KEY) for p in patterns):
    checks.prompt_length(model.prompt_length, f"TRAINABLE = {patterns} trains only the prompt")
  batch_size = dataset.batch_size
  checks.divides(batch_size, num_microbatches)
  trainable = model_lib.check_trainable(tuning.trainable, params_lib.names(model))
  methods.check_settings(model, dataset, tuning, trainable, checkpoint.peft_export)
  task_ids = methods.evaluation_prompt_ids(model, dataset.mixture_or_task_name, ("train", evaluation.split))
  export = methods.prompt_exporter(model)

  # ---------------------------------------------------------------- validate and build (no writes)
  evaluator = evaluator_lib.Evaluator(model, dataset.mixture_or_task_name, dataset.task_feature_lengths,
                                      evaluation.split, evaluation.batch_size or batch_size,
                                      evaluation.max_examples, evaluation.decode_fn, seed,
                                      _score_tasks(dataset.mixture_or_task_name, evaluation), task_ids)
  peft = peft_export.peft_settings(model, restore.path) if checkpoint.peft_export else None
  tx = optimizer or optim.adafactor()
  base = backbone.restore_backbone(model, restore.path, mesh_shape, restore.dtype, seed, trainable,
                                   parameter_partitioning_dims, tx)
  label_check.warn_indistinct_targets(base.params, evaluator, trainable)
  params, frozen = backbone.trainable_and_frozen(base, backbone.initial_prompt(base, prompt_init, seed),
                                                 trainable)
  trainable_shardings, frozen_shardings = params_lib.shardings(model, base.mesh, base.rules, trainable)
  state, state_shardings = train_step.create_sharded(params, tx, base.mesh, trainable_shardings)
  step_fn = train_step.partitioned_train_step(model, tx, base.mesh, base.rules, frozen_shardings,
                                              state_shardings, donate=True,
                                              num_microbatches=num_microbatches, z_loss=z_loss,
                                              loss_normalizing_factor=tuning.loss_normalizing_factor,
                                              objective=methods.step_objective(tuning),
                                              regularizer=methods.step_regularizer(tuning, model, base.params))

  # ---------------------------------------------------------------- MODEL_DIR: one trainer, one run
  primary = multihost.is_primary()  # the host that writes files and prints
  say = print if primary else (lambda *_: None)
  saved_config, changes = run_folder.check(model_dir, overwrite)  # every host reads, none writes
  claim = run_folder.claim(model_dir, overwrite, say) if primary else None
  progress = writer = None
  try:
    multihost.barrier("model_dir_claimed")
    checkpointer = state_lib.TrainCheckpointer(model_dir, keep=checkpoint.keep,
                                               keep_best_metric=evaluator_lib.SCORE_KEY,
                                               frozen_checkpoint=restore.path, peft_export=peft,
                                               scan_layers=model.cfg.scan_layers, trainable=trainable,
                                               prompt_of=export)
    try:
      restored = checkpointer.restore_latest(state)
    except state_lib.CheckpointError as err:
      raise UsageError(str(err)) from None
    start, position = 0, 0
    if restored is None and restore.optimizer_state:
      state = state.replace(opt_state=backbone.pretrained_optimizer_state(
          state.opt_state, restore.path, state_shardings.opt_state))
    if restored is not None:
      state, start, position = restored.state, restored.step, int(restored.data_state.get("position", 0))
      say(f"resuming from {checkpointer.path(start)} (step {start})")
    if primary:
      if saved_config is not None and changes.other:
        kept = run_folder.keep_history(model_dir, saved_config, start)
        say(f"settings changed since the last start: {'; '.join(changes.other)} (that start's config.gin "
            f"is kept as {os.path.relpath(kept, model_dir)})")
      gin_config.write_config(model_dir)
    writer = metrics_writer.MetricsWriter(model_dir, enabled=primary, start_step=start)
    best, evals_without_gain = _early_stopping_state(restored)
    if tuning.rank_loss:
      batches = pipeline.ranked_train_batches(dataset.mixture_or_task_name, dataset.task_feature_lengths,
                                              batch_size, seed, position=position)
    else:
      batches = pipeline.train_batches(dataset.mixture_or_task_name, dataset.task_feature_lengths,
                                       batch_size, seed, position=position,
                                       length_buckets=dataset.length_buckets,
                                       pack_prompt_length=model.prompt_length if dataset.pack else None,
                                       member_prompt_ids=task_ids is not None)
    dropout_rng = jax.random.PRNGKey(seed + 1)

    # -------------------------------------------------------------- loop
    progress = metrics_writer.Progress(train_steps, start, batch_size, progress_bar if primary else False)
    note = progress.write if primary else (lambda *_: None)
    averager, step = _Averager(), start
    last_saved = checkpointer.latest_step()
    pending = []  # (step, on-device stats, examples): fetched in groups so the host never waits per step
    loss = None
    patience = evaluation.early_stopping_patience

    def drain():
      nonlocal loss
      for pending_step, stats, examples in multihost.fetch(pending):
        _check_finite(pending_step, stats, last_saved)  # before any save of that state
        averager.add(stats, examples)
        loss = float(stats["cross_ent_per_token"])
      pending.clear()

    while step < train_steps:
      batch = next(batches)
      state, stats = step_fn(state, frozen, batch, dropout_rng)
      step += 1
      pending.append((step, stats, packing.num_examples(batch)))
      is_eval = step % evaluation.period == 0 or step == train_steps
      is_log = step % log_period == 0 or step == train_steps
      if is_log or is_eval or step % checkpoint.period == 0 or len(pending) >= _MAX_PENDING:
        drain()
      progress.update(step, loss)
      if is_log:
        writer.write(step, averager.flush())
      metrics = {}
      is_save = step % checkpoint.period == 0 or step == train_steps
      if is_eval or is_save:
        _check_state(step, state, last_saved)
      if is_eval:
        metrics, outputs = evaluator.evaluate(state.params, frozen)
        writer.write(step, metrics)
        writer.write_inferences(step, evaluator, metrics, outputs)
        note(f"step {step}: " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items())))
        if best is None or score_of(metrics) > score_of(best[1]):
          best, evals_without_gain = (step, metrics), 0
          exported = export(state.params)
          if primary and exported is not None:
            prompt_io.save_npy(os.path.join(model_dir, "prompt_best.npy"), exported)
        else:
          evals_without_gain += 1
      stopping = bool(patience) and evals_without_gain >= patience
      if is_save or stopping:
        data_state = {"position": position + step - start, "evals_without_gain": evals_without_gain,
                      "best_step": best[0] if best else None, "best_metrics": best[1] if best else {}}
        checkpointer.save(step, state, data_state, metrics)
        last_saved = step
      if stopping:
        note(f"early stopping at step {step}: no gain in {evals_without_gain} evaluations")
        break
  except OSError as err:  # a write to MODEL_DIR failed: a full disk, a folder turned read-only, ...
    raise UsageError(f"training stopped: a write to MODEL_DIR failed ({_os_error(err)}); the checkpoints "
                     f"saved before are intact ({_last_good(_latest(model_dir))}): free disk space or fix "
                     "the folder, then run again to resume") from None
  finally:
    if progress is not None:
      progress.close()
    if writer is not None:
      writer.close()
    if claim is not None:
      claim.release()
  best_step, best_metrics = best if best else (step, {})
  for line in _summary_lines(best_metrics, evaluator, best_step):
    say(line)
  best_score = best_metrics.get(evaluator_lib.SCORE_KEY)
  say(f"done: {step} steps; best {evaluator_lib.SCORE_KEY} "
      f"{math.nan if best_score is None else best_score:.2f} at step {best_step}; outputs in {model_dir}")
  return {"step": step, "best_step": best_step, **best_metrics}


def _score_tasks(mixture_or_task_name: str, evaluation: EvaluationConfig) -> Optional[list]:
  """The tasks whose metrics choose the best evaluation: EVAL_SCORE_TASKS, else the evaluated
  tasks the run also trains on (None, i.e. all, when it trains on none of them)."""
  if evaluation.score_tasks:
    return list(evaluation.score_tasks)
  trained = {t.name for t in pipeline.leaf_tasks(mixture_or_task_name, "train")}
  evaluated = [t.name for t in pipeline.leaf_tasks(mixture_or_task_name, evaluation.split)]
  return [n for n in evaluated if n in trained] or None


def _os_error(err: OSError) -> str:
  what = err.strerror or str(err)
  return f"{what}: {err.filename}" if err.filename else what


def _latest(model_dir: str) -> Optional[int]:
  """The newest complete checkpoint's step, read from the folder (after a failed write)."""
  steps = [s for s in state_lib.checkpoint_steps(model_dir) if state_lib.read_metadata(model_dir, s)]
  return steps[-1] if steps else None


def _early_stopping_state(restored) -> tuple[Optional[tuple[int, dict]], int]:
  """(best evaluation as (step, metrics), evaluations since it) as the resumed checkpoint saved
  them, so that a restarted run keeps and stops where the uninterrupted one would."""
  data = restored.data_state if restored is not None else {}
  best = (int(data["best_step"]), dict(data["best_metrics"])) if data.get("best_step") is not None else None
  return best, int(data.get("evals_without_gain", 0))
