"""The train loop's settings, grouped as T5X groups them (DatasetConfig, RestoreCheckpointConfig,
SaveCheckpointConfig) so that a new method or option extends one small record, not one long
signature. Each is bound in gin from the same macros as before (configs/runs/prompt_finetune.gin).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Optional, Sequence

import gin

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


@gin.configurable(module="prompt_tuning.runs.settings")
@dataclasses.dataclass(frozen=True)
class TuningConfig:
  """What the train step differentiates and how it weighs the loss.

  `trainable`: regular expressions over '/'-joined parameter names (`encoder/layers_0/mlp/wi_0/
  kernel`, `prompt/prompt`), each fully matched; the matched parameters train, the rest stay
  frozen. ('prompt/.*',) is prompt tuning, ('.*',) with PROMPT_LENGTH = 0 model tuning.
  `loss_normalizing_factor`: None sums the loss over target tokens (T5X's default); a constant
  (e.g. 233472 = 2048 x 114 for Mesh-TF-pretrained T5 1.1, as T5X's docs advise) divides it.
  """
  trainable: Sequence[str] = DEFAULT_TRAINABLE
  loss_normalizing_factor: Optional[float] = None


@gin.configurable(module="prompt_tuning.runs.settings")
@dataclasses.dataclass(frozen=True)
class RestoreCheckpointConfig:
  """The frozen backbone: a T5X checkpoint or Hugging Face folder (None: random, for tests), and
  the dtype its weights are stored in (e.g. 'bfloat16' halves their memory)."""
  path: Optional[str] = gin.REQUIRED
  dtype: Optional[str] = "float32"


@gin.configurable(module="prompt_tuning.runs.settings")
@dataclasses.dataclass(frozen=True)
class SaveCheckpointConfig:
  """Every `period` steps (and at the end) a checkpoint; the `keep` best by `eval/score` are kept,
  plus the latest. With `peft_export` each checkpoint's prompt is also written as a PyTorch PEFT
  adapter, MODEL_DIR/prompts/peft_<step>/ (prefix placement, one prompt)."""
  period: int = 1000
  keep: int = 1
  peft_export: bool = False


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
