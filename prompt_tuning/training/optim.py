"""Adafactor with the paper's / T5X's prompt-tuning semantics, built from optax.

optax's `adafactor` chain matches T5X's update rule exactly when configured as below:
  v_t = d_t v_{t-1} + (1 - d_t)(g^2 + eps1),  d_t = 1 - (t - offset + 1)^-0.8
  u   = g / sqrt(v_t), clipped so that RMS(u) <= 1
  p  <- (1 - wd) p - lr u                 (weight decay not multiplied by the learning rate)
with no momentum, no parameter scaling, and an unfactored second moment. The step counter
lives in the optimizer state and starts at 0 when prompt tuning starts, so the pretrained
checkpoint's step (1.1M for the lm100k models) never reaches the decay schedule.
"""
from __future__ import annotations

import optax

from prompt_tuning.config import checks


def adafactor(learning_rate: float = 0.3, decay_rate: float = 0.8, step_offset: int = 0,
              clipping_threshold: float | None = 1.0, weight_decay_rate: float | None = 1e-5,
              epsilon1: float = 1e-30, factored: bool = False) -> optax.GradientTransformation:
  """The paper's optimizer (defaults); `factored=False` keeps the prompt's second moment whole."""
  checks.check({"LEARNING_RATE": learning_rate, "adafactor.decay_rate": decay_rate,
                "adafactor.step_offset": step_offset, "adafactor.clipping_threshold": clipping_threshold,
                "adafactor.weight_decay_rate": weight_decay_rate, "adafactor.epsilon1": epsilon1})
  return optax.adafactor(
      learning_rate=learning_rate,
      min_dim_size_to_factor=128,
      decay_rate=decay_rate,
      decay_offset=step_offset,
      multiply_by_parameter_scale=False,
      clipping_threshold=clipping_threshold,
      momentum=None,
      weight_decay_rate=weight_decay_rate,
      eps=epsilon1,
      factored=factored,
  )
