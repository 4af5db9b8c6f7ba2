"""The two layouts of a stack's layer parameters, and the conversion between them.

Checkpoints (T5X, Hugging Face, every export) name each layer apart: `encoder/layers_3/mlp/wo/kernel`
[d_ff, d]. A model with `T5Config.scan_layers` holds one subtree per stack instead,
`encoder/layers/mlp/wo/kernel` [num_layers, d_ff, d], layer i at index i of the leading axis.
`stack_layers` and `unstack_layers` convert any parameter-shaped tree (weights, shapes, lazy
checkpoint leaves, optimizer statistics) between the two; everything that crosses the checkpoint
boundary goes through them, so files keep T5X's names whatever the model's layout.
"""
from __future__ import annotations

import re
from typing import Any, Callable, Mapping, Optional, Sequence

import jax
import numpy as np
from flax import traverse_util

from prompt_tuning.model import t5

_NUMBERED = re.compile(r"(^|/)layers_(\d+)(?=/|$)")
_STACKED = re.compile(rf"(^|/){t5.LAYERS_AXIS}(?=/|$)")


def stacked_name(name: str) -> tuple[str, Optional[int]]:
  """('encoder/layers/x', 3) for 'encoder/layers_3/x'; (name, None) for a name outside the layers."""
  match = _NUMBERED.search(name)
  if match is None:
    return name, None
  return f"{name[:match.start()]}{match.group(1)}{t5.LAYERS_AXIS}{name[match.end():]}", int(match.group(2))


def layer_name(name: str, index: int) -> str:
  """'encoder/layers_3/x' for ('encoder/layers/x', 3)."""
  return _STACKED.sub(rf"\g<1>layers_{index}", name, count=1)


def is_stacked(name: str) -> bool:
  return _STACKED.search(name) is not None


def _split(x: Any) -> list:
  if isinstance(x, jax.ShapeDtypeStruct):
    return [jax.ShapeDtypeStruct(x.shape[1:], x.dtype)] * x.shape[0]
  return [x[i] for i in range(x.shape[0])]


def _stack(xs: Sequence[Any]) -> Any:
  if isinstance(xs[0], jax.ShapeDtypeStruct):
    return jax.ShapeDtypeStruct((len(xs),) + tuple(xs[0].shape), xs[0].dtype)
  if isinstance(xs[0], jax.Array):
    return jax.numpy.stack(xs)
  return np.stack(xs)


def _flat(tree: Mapping) -> dict[str, Any]:
  return traverse_util.flatten_dict(dict(tree), sep="/")


def stack_layers(tree: Mapping, stack: Callable[[list], Any] = _stack) -> dict:
  """The scanned layout of a tree in checkpoint layout: every `layers_0 .. layers_{n-1}` group
  becomes `layers`, each leaf the `stack` of the n layers' leaves in order (by default
  `np.stack` / `jnp.stack`, shapes for `ShapeDtypeStruct`s; a lazy reader may be passed)."""
  out, groups = {}, {}
  for name, value in _flat(tree).items():
    target, index = stacked_name(name)
    if index is None:
      out[name] = value
    else:
      groups.setdefault(target, {})[index] = value
  for target, layers in groups.items():
    if sorted(layers) != list(range(len(layers))):
      raise ValueError(f"{target}: layers {sorted(layers)} are not numbered 0..{len(layers) - 1}, "
                       "so they cannot be stacked")
    if target in out:
      raise ValueError(f"{target} appears both stacked and as layers_i")
    out[target] = stack([layers[i] for i in range(len(layers))])
  return traverse_util.unflatten_dict(out, sep="/")


def unstack_layers(tree: Mapping, unstack: Callable[[Any], list] = _split) -> dict:
  """The checkpoint layout of a scanned tree: every `layers` leaf split by `unstack` (default:
  along its leading axis) into `layers_0 .. layers_{n-1}`; a tree without `layers` is returned
  as it is (so calling this on either layout is safe)."""
  out = {}
  for name, value in _flat(tree).items():
    if not is_stacked(name):
      out[name] = value
      continue
    for i, part in enumerate(unstack(value)):
      out[layer_name(name, i)] = part
  return traverse_util.unflatten_dict(out, sep="/")
