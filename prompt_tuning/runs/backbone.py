"""What every run starts from: the backbone on its mesh, and the prompt's first value.

Training, evaluation and inference all restore the backbone the same way, and all report a bad
checkpoint or prompt as one line before anything is written. Training then splits the whole
parameter tree by its TRAINABLE patterns (`trainable_and_frozen`).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Optional, Sequence

import jax
import optax
from flax import linen as nn

from prompt_tuning.checkpoints import hf
from prompt_tuning.checkpoints import restore
from prompt_tuning.config.errors import UsageError
from prompt_tuning.model import params as params_lib
from prompt_tuning.model import prompted as model_lib
from prompt_tuning.model import prompts as prompts_lib
from prompt_tuning.parallel import partitioning
from prompt_tuning.training import footprint
from prompt_tuning.training import optim


@dataclasses.dataclass
class Backbone:
  """The restored backbone (every parameter but the prompt) and the layout it lives in."""
  module: model_lib.PromptT5
  params: Any
  mesh: Any
  rules: Any


def restore_backbone(module: model_lib.PromptT5, checkpoint_path: Optional[str],
                     mesh_shape: Sequence[int] = (-1, 1), dtype: Optional[str] = "float32",
                     seed: int = 0, trainable: Sequence[str] = (), parameter_partitioning_dims: int = 1,
                     tx: Optional[optax.GradientTransformation] = None) -> Backbone:
  """The backbone from a T5X / Hugging Face checkpoint, or random weights when path is None.

  Matrices are stored in `dtype`, except those the `trainable` patterns match: float32. The
  parameters are laid out by T5X's 1-D or 2-D parameter partitioning; a mesh that cannot split
  them evenly, or (given the optimizer `tx`) whose devices cannot hold them with the train
  state, is refused before any weight is read.
  """
  mesh, rules = _layout(module, mesh_shape, parameter_partitioning_dims)
  if tx is not None:
    try:
      footprint.check_fits(footprint.step_bytes(module, tx, mesh, rules, trainable or (), dtype),
                           footprint.device_memory_bytes())
    except ValueError as err:
      raise UsageError(f"MESH_SHAPE = {tuple(mesh_shape)} cannot hold the model: {err}; split the weights "
                       "over more devices (PARAMETER_PARTITIONING_DIMS = 2, a larger MESH_SHAPE), store "
                       "frozen ones in bfloat16 (FROZEN_DTYPE) or train fewer (TRAINABLE)") from None
  if checkpoint_path is None:
    print("warning: INITIAL_CHECKPOINT_PATH is None: the frozen model is RANDOM (tests only)")
    params = params_lib.init_random_frozen(module, jax.random.PRNGKey(seed), mesh, rules, dtype,
                                           trainable)
    return Backbone(module, params, mesh, rules)
  if not os.path.exists(checkpoint_path) and "://" not in checkpoint_path:
    raise UsageError(f"checkpoint {checkpoint_path!r} does not exist: set INITIAL_CHECKPOINT_PATH to a "
                     "T5X checkpoint folder (checkpoint_<step>) or a Hugging Face T5 folder")
  try:
    params = restore.restore_frozen(module, checkpoint_path, mesh=mesh, rules=rules, dtype=dtype,
                                    trainable=trainable)
  except (ValueError, FileNotFoundError, OSError) as err:
    raise UsageError(f"cannot restore {checkpoint_path}: {' '.join(str(err).split())}") from None
  return Backbone(module, params, mesh, rules)


def _layout(module: model_lib.PromptT5, mesh_shape: Sequence[int], parameter_partitioning_dims: int):
  """(mesh, rules), refused in one line when the mesh cannot split the parameters evenly."""
  try:
    mesh = partitioning.create_mesh(tuple(mesh_shape))
    rules = partitioning.logical_rules(parameter_partitioning_dims=parameter_partitioning_dims)
  except ValueError as err:
    raise UsageError(str(err)) from None
  shapes = nn.meta.unbox(params_lib.abstract_params(module))
  try:
    partitioning.check_divisible(shapes, model_lib.merge(*params_lib.shardings(module, mesh, rules)))
  except ValueError as err:
    raise UsageError(f"MESH_SHAPE = {tuple(mesh_shape)} (data {mesh.shape['data']} x model "
                     f"{mesh.shape['model']}, PARAMETER_PARTITIONING_DIMS = {parameter_partitioning_dims}) "
                     f"cannot hold the model's parameters: {err}; choose mesh axes that divide the "
                     "model's dimensions, or PARAMETER_PARTITIONING_DIMS = 1") from None
  return mesh, rules


def initial_prompt(frozen: Backbone, prompt_init: Optional[prompts_lib.Initializer], seed: int) -> dict:
  """The starting values of the prompt (checked against the model's prompt shape) and of the
  methods' parameters (`prompted.init_prompt`); {} without any."""
  if frozen.module.prompt_length == 0 and not model_lib.methods(frozen.module):
    return {}
  try:
    prompt = model_lib.init_prompt(frozen.module, prompt_init or prompts_lib.random_uniform(),
                                   jax.random.PRNGKey(seed), frozen.params)
  except (ValueError, FileNotFoundError, OSError) as err:
    raise UsageError(" ".join(str(err).split())) from None
  return jax.device_put(prompt, partitioning.replicated(frozen.mesh))


def trainable_and_frozen(frozen: Backbone, prompt: dict, trainable: Sequence[str]) -> tuple[dict, dict]:
  """The whole parameter tree (backbone + prompt) split into (trainable, frozen) by the patterns."""
  return model_lib.split(model_lib.merge(prompt, frozen.params), trainable)


def pretrained_optimizer_state(opt_state, checkpoint_path: Optional[str], shardings=None):
  """`opt_state` with the Adafactor state and step of the T5X checkpoint (RESTORE_OPTIMIZER_STATE)."""
  if checkpoint_path is None or hf.is_hf_checkpoint(checkpoint_path):
    raise UsageError(f"RESTORE_OPTIMIZER_STATE = True needs a T5X checkpoint with its Adafactor state, "
                     f"and INITIAL_CHECKPOINT_PATH is {checkpoint_path!r}: set RESTORE_OPTIMIZER_STATE = "
                     "False to start the optimizer from zero")
  try:
    return optim.restore_t5x_state(opt_state, checkpoint_path, shardings)
  except (ValueError, FileNotFoundError, OSError) as err:
    raise UsageError(" ".join(str(err).split())) from None


def load_prompts(frozen: Backbone, files: Sequence[str]) -> list[dict]:
  """The prompt subtree of each file, shape-checked against the model."""
  try:
    return [restore.restore_prompt(frozen.module, frozen.params, path=path) for path in files]
  except (ValueError, OSError) as err:
    raise UsageError(" ".join(str(err).split())) from None
