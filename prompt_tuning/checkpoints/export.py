"""A tuned model as a backbone of its own: the run's frozen checkpoint with its trained weights in place.

`tuned_backbone(model_dir)` gives, under T5X names, every backbone parameter of a training run:
those the run trained (TRAINABLE) from its checkpoint, the rest from the frozen checkpoint its
metadata.json names, so the frozen remainder comes out bit for bit as it went in. Scanned runs'
stacked layers are split back into `layers_i`. Everything stays lazy (`t5x.Leaf`s) until a
writer reads it one array at a time: `t5x.write_t5x` (a T5X checkpoint that `restore_frozen`,
and so prompt tuning, starts from) or `hf.write_hf_t5` (a Hugging Face folder). A trained prompt
is not part of the backbone: it is the run's prompts/prompt_<step>.npy. `export` does both.
"""
from __future__ import annotations

import os
from typing import Optional

import numpy as np
from flax import traverse_util

from prompt_tuning.checkpoints import hf
from prompt_tuning.checkpoints import reader
from prompt_tuning.checkpoints import restore
from prompt_tuning.checkpoints import shapes
from prompt_tuning.checkpoints import state
from prompt_tuning.checkpoints import t5x
from prompt_tuning.model import layer_stack
from prompt_tuning.model import prompted as model_lib

SCORE = "eval/score"  # what the train loop ranks its evaluations by


class _LayerLeaf(t5x.Leaf):
  """Layer `index` of a stacked [layers, ...] leaf."""

  def __init__(self, stacked: t5x.Leaf, index: int):
    self._stacked, self._index = stacked, index
    self.shape, self.dtype = tuple(stacked.shape[1:]), stacked.dtype

  def read(self, index: tuple = ()) -> np.ndarray:
    return self._stacked.read((self._index,) + tuple(index))


def choose_step(model_dir: str, step: Optional[int] = None) -> int:
  """`step`, or the run's best evaluated checkpoint (by eval/score), else its latest."""
  complete = [s for s in state.checkpoint_steps(model_dir) if state.read_metadata(model_dir, s)]
  if not complete:
    raise ValueError(f"{model_dir} has no complete checkpoint_<step> (is it a training run's MODEL_DIR?)")
  if step is None:
    ranked = state.ranked_steps(model_dir, SCORE)
    return ranked[0] if ranked else complete[-1]
  if step not in complete:
    raise ValueError(f"{model_dir} has no complete checkpoint_{step}; it has {complete}")
  return step


def tuned_backbone(model_dir: str, step: Optional[int] = None) -> tuple[dict[str, t5x.Leaf], int]:
  """({T5X name: leaf} of every backbone parameter after tuning, the step exported)."""
  step = choose_step(model_dir, step)
  meta = state.read_metadata(model_dir, step)
  trained = reader.open_any(os.path.join(model_dir, f"checkpoint_{step}")).params()
  trained = {n: leaf for n, leaf in trained.items() if not n.startswith(model_lib.PROMPT_KEY + "/")}
  trained = traverse_util.flatten_dict(layer_stack.unstack_layers(trained, unstack=lambda leaf: [
      _LayerLeaf(leaf, i) for i in range(leaf.shape[0])]), sep="/")
  source = meta.get("frozen_checkpoint")
  if not trained:
    raise ValueError(f"checkpoint_{step} of {model_dir} trained no backbone parameter (a prompt only): "
                     "its backbone is the frozen checkpoint itself; use the run's prompt file with it")
  if source is None:
    if meta.get("trainable") != [".*"]:
      raise ValueError(f"{model_dir} tuned a random backbone (INITIAL_CHECKPOINT_PATH = None) and left "
                       "some of it frozen: there is nothing to export the frozen part from")
    return trained, step
  frozen = restore.open_backbone(source)
  for name, leaf in trained.items():
    if name not in frozen or tuple(frozen[name].shape) != tuple(leaf.shape):
      raise ValueError(f"{name} {list(leaf.shape)} of checkpoint_{step} is not in the run's frozen "
                       f"checkpoint {source} with that shape: the run and its backbone disagree")
  return {**frozen, **trained}, step


FORMATS = ("t5x", "hf")


def export(model_dir: str, output: str, fmt: str = "t5x", step: Optional[int] = None,
           dtype: Optional[str] = None, relative_attention_max_distance: int = 128) -> int:
  """Writes the tuned backbone of `model_dir` (checkpoint `step`, default the best) to `output` as
  a T5X checkpoint (arrays as stored: float32 for the trained ones, the frozen checkpoint's dtype
  for the rest; readers cast) or a Hugging Face folder (`dtype`: None keeps them); returns the step."""
  if fmt not in FORMATS:
    raise ValueError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
  leaves, step = tuned_backbone(model_dir, step)
  if fmt == "hf":
    cfg = shapes.config_from_shapes({n: leaf.shape for n, leaf in leaves.items()},
                                    relative_attention_max_distance=relative_attention_max_distance)
    hf.write_hf_t5(output, leaves, cfg, dtype=dtype)
  else:
    t5x.write_t5x(output, leaves, step=step)
  return step
