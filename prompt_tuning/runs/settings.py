"""The train loop's settings, grouped as T5X groups them (DatasetConfig, RestoreCheckpointConfig,
SaveCheckpointConfig) so that a new method or option extends one small record, not one long
signature. Each is bound in gin from the same macros as before (configs/runs/prompt_finetune.gin).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Optional, Sequence

import gin

from prompt_tuning.config import checks
from prompt_tuning.model.prompted import DEFAULT_TRAINABLE


@gin.configurable(module="prompt_tuning.runs.settings")
@dataclasses.dataclass(frozen=True)
class DatasetConfig:
  """What one train step reads: the task or mixture, its token lengths and the global batch.

  `length_buckets` (e.g. (64, 128, 256, 512)) cuts each batch's input padding to the smallest
  bucket that fits it; `pack` packs several examples per row instead, each with its own prompt
  copy (a step then sees more than `batch_size` examples).
  """
  mixture_or_task_name: str = gin.REQUIRED
  task_feature_lengths: Mapping[str, int] = gin.REQUIRED
  batch_size: int = gin.REQUIRED
  length_buckets: Optional[Sequence[int]] = None
  pack: bool = False

  def __post_init__(self):
    checks.check({"MIXTURE_OR_TASK_NAME": self.mixture_or_task_name,
                  "TASK_FEATURE_LENGTHS": self.task_feature_lengths, "BATCH_SIZE": self.batch_size,
                  "LENGTH_BUCKETS": self.length_buckets, "PACK": self.pack})


@gin.configurable(module="prompt_tuning.runs.settings")
@dataclasses.dataclass(frozen=True)
class TuningConfig:
  """What the train step differentiates and how it weighs the loss.

  `trainable`: regular expressions over '/'-joined parameter names (`encoder/layers_0/mlp/wi_0/
  kernel`, `prompt/prompt`), each fully matched; the matched parameters train, the rest stay
  frozen. ('prompt/.*',) is prompt tuning, ('.*',) with PROMPT_LENGTH = 0 model tuning.
  `loss_normalizing_factor`: None sums the loss over target tokens (T5X's default); a constant
  (e.g. 233472 = 2048 x 114 for Mesh-TF-pretrained T5 1.1, as T5X's docs advise) divides it.
  `rank_loss`: instead of the token loss, 'softmax' (cross-entropy over the label candidates'
  sequence log-likelihoods) or 'hinge' (margin `rank_margin`) on the candidates of a
  `*_rank_classification` task (`prompt_tuning.training.rank_loss`). `wayward_text`: a task
  description whose token embeddings the prompt is pulled towards, with weight `wayward_gamma`
  (`prompt_tuning.training.wayward`).
  """
  trainable: Sequence[str] = DEFAULT_TRAINABLE
  loss_normalizing_factor: Optional[float] = None
  rank_loss: Optional[str] = None
  rank_margin: float = 0.2
  wayward_text: Optional[str] = None
  wayward_gamma: float = 0.01

  def __post_init__(self):
    checks.check({"TRAINABLE": self.trainable, "LOSS_NORMALIZING_FACTOR": self.loss_normalizing_factor,
                  "RANK_LOSS": self.rank_loss, "RANK_MARGIN": self.rank_margin,
                  "WAYWARD_TEXT": self.wayward_text, "WAYWARD_GAMMA": self.wayward_gamma})


@gin.configurable(module="prompt_tuning.runs.settings")
@dataclasses.dataclass(frozen=True)
class RestoreCheckpointConfig:
  """The backbone: a T5X checkpoint or Hugging Face folder (None: random, for tests), and the
  dtype its frozen matrices are stored in (e.g. 'bfloat16' halves their memory; trainable ones
  are float32). `optimizer_state`: also read the checkpoint's Adafactor state and step, as T5X's
  fine-tuning does (model tuning); False starts the optimizer from zero."""
  path: Optional[str] = gin.REQUIRED
  dtype: Optional[str] = "float32"
  optimizer_state: bool = False

  def __post_init__(self):
    checks.check({"INITIAL_CHECKPOINT_PATH": self.path, "FROZEN_DTYPE": self.dtype,
                  "RESTORE_OPTIMIZER_STATE": self.optimizer_state})


@gin.configurable(module="prompt_tuning.runs.settings")
@dataclasses.dataclass(frozen=True)
class SaveCheckpointConfig:
  """Every `period` steps (and at the end) a checkpoint; the `keep` best by `eval/score` are kept,
  plus the latest (None: all). With `peft_export` each checkpoint's prompt is also written as a
  PyTorch PEFT adapter, MODEL_DIR/prompts/peft_<step>/ (prefix placement, one prompt)."""
  period: int = 1000
  keep: Optional[int] = 1
  peft_export: bool = False

  def __post_init__(self):
    checks.check({"CHECKPOINT_PERIOD": self.period, "KEEP_CHECKPOINTS": self.keep,
                  "PEFT_EXPORT": self.peft_export})


@gin.configurable(module="prompt_tuning.runs.settings")
@dataclasses.dataclass(frozen=True)
class EvaluationConfig:
  """Evaluation during training: every `period` steps (and at the end) on `split` (its first
  `max_examples`, None: all), in batches of `batch_size` (None: the training batch), decoding
  with `decode_fn` (None: greedy); stop after `early_stopping_patience` evaluations without
  gain (None: never). `eval/score`, which picks the best evaluation, is the mean metric of
  `score_tasks` — None: the tasks the run trains on (a transfer mixture such as
  `squad_to_mrqa_v100` is then selected on SQuAD dev, as in the paper, not on its targets)."""
  period: int = 1000
  split: str = "validation"
  max_examples: Optional[int] = None
  batch_size: Optional[int] = None
  decode_fn: Optional[Callable] = None
  early_stopping_patience: Optional[int] = None
  score_tasks: Optional[Sequence[str]] = None

  def __post_init__(self):
    checks.check({"EVAL_PERIOD": self.period, "EVAL_SPLIT": self.split,
                  "EVAL_MAX_EXAMPLES": self.max_examples, "EvaluationConfig.batch_size": self.batch_size,
                  "EARLY_STOPPING_PATIENCE": self.early_stopping_patience,
                  "EVAL_SCORE_TASKS": self.score_tasks})
    checks.decoder(self.decode_fn)
