"""Partial restore: the frozen backbone from a checkpoint, the prompt from an initializer or a file.

In the spirit of T5X's `assignment_map` + `fallback_to_scratch`: every model parameter is looked up
in the checkpoint under its own name, or under the name an assignment rule gives it; a rule with
`None` (or, with `fallback_to_scratch`, a name the checkpoint lacks) initializes it from scratch.
Any other disagreement fails naming the parameter, expected vs found.

Names, rules and messages are always the checkpoint's (`encoder/layers_3/...`): a model with
scanned layers reads each stacked parameter from its `layers_{i}` arrays, shard by shard, so the
same checkpoints serve both layouts.
"""
from __future__ import annotations

import os
import re
from typing import Any, Optional, Sequence

import jax
import numpy as np
from flax import linen as nn
from flax import traverse_util

from prompt_tuning.checkpoints import hf
from prompt_tuning.checkpoints import prompt_io
from prompt_tuning.checkpoints import reader
from prompt_tuning.checkpoints import t5x
from prompt_tuning.model import layer_stack
from prompt_tuning.model import params as params_lib
from prompt_tuning.model import prompted as model_lib
from prompt_tuning.model import prompts as prompts_lib
from prompt_tuning.parallel import multihost
from prompt_tuning.parallel import partitioning

AssignmentMap = Sequence[tuple[str, Optional[str]]]
_TRAINED = "train_state/params/"  # where a training checkpoint keeps the trainable parameters
_STEP_DIR = re.compile(r"^checkpoint_\d+$")


def open_backbone(path: str) -> dict[str, t5x.Leaf]:
  """Lazy frozen-parameter leaves of a T5X checkpoint (any layout) or a Hugging Face T5 folder."""
  if hf.is_hf_checkpoint(path):
    return hf.open_hf_t5(path)[0]
  return t5x.open_checkpoint(path).params()


def expected_frozen(module: model_lib.PromptT5) -> dict[str, jax.ShapeDtypeStruct]:
  """Name -> shape/dtype of every frozen parameter of the module (in its own layout)."""
  params = nn.meta.unbox(params_lib.abstract_params(module))
  return _flat(model_lib.split(params, model_lib.OUTSIDE_BACKBONE)[1])


def _flat(tree) -> dict:
  return traverse_util.flatten_dict(tree, sep="/")


def _unflat(flat: dict) -> dict:
  return traverse_util.unflatten_dict(flat, sep="/")


def resolve(expected: Sequence[str], available: Sequence[str], assignment_map: AssignmentMap = (),
            fallback_to_scratch: bool = False) -> dict[str, Optional[str]]:
  """Model name -> checkpoint name (None: from scratch), applying the first matching rule."""
  available = set(available)
  out = {}
  for name in expected:
    source: Optional[str] = name
    for pattern, replacement in assignment_map:
      if re.fullmatch(pattern, name):
        source = None if replacement is None else re.sub(pattern, replacement, name)
        break
    if source is not None and source not in available:
      if not fallback_to_scratch:
        raise ValueError(f"parameter {name!r}: expected in the checkpoint as {source!r} but not found; "
                         "fix the model config, add an assignment_map rule, or set fallback_to_scratch")
      source = None
    out[name] = source
  return out


def check(mapping: dict[str, Optional[str]], leaves: dict[str, t5x.Leaf],
          expected: dict[str, Any], strict: bool = True) -> None:
  """Shapes and dtype kinds must agree; with `strict`, unused checkpoint parameters are errors."""
  for name, source in mapping.items():
    if source is None:
      continue
    leaf, want = leaves[source], expected[name]
    if tuple(leaf.shape) != tuple(want.shape):
      raise ValueError(f"parameter {name!r}: the model expects shape {tuple(want.shape)} but the checkpoint "
                       f"has {tuple(leaf.shape)} at {source!r}; the T5 config does not match the checkpoint")
    if np.issubdtype(leaf.dtype, np.floating) != np.issubdtype(np.dtype(want.dtype), np.floating):
      raise ValueError(f"parameter {name!r}: the model expects {np.dtype(want.dtype)} but the checkpoint has "
                       f"{leaf.dtype} at {source!r}")
  # Checkpoint names the model has but remapped or skipped on purpose are not "unused".
  unused = sorted(set(leaves) - {s for s in mapping.values() if s} - set(mapping))
  if strict and unused:
    shown = ", ".join(unused[:5]) + (f" and {len(unused) - 5} more" if len(unused) > 5 else "")
    raise ValueError(f"the checkpoint has parameters the model lacks: {shown}; the T5 config does not "
                     "match the checkpoint (or pass strict=False to ignore them)")


def _is_matrix(name: str) -> bool:
  return name.rsplit("/", 1)[-1] in ("kernel", "embedding")


def restore_frozen(module: model_lib.PromptT5, path: str, *, mesh=None, rules=None,
                   dtype: Any = None, assignment_map: AssignmentMap = (),
                   fallback_to_scratch: bool = False, strict: bool = True,
                   rng: Optional[jax.Array] = None, trainable: Sequence[str] = ()) -> dict:
  """The backbone (every parameter but the prompt), read shard by shard into the mesh layout.

  Matrices (kernels, embedding) take `dtype`; norm scales and relative-position tables stay
  float32 as the forward pass uses them in float32 (the same split as `model.cast_frozen`), and
  parameters matched by the `trainable` patterns are always float32, the precision they train in.
  `mesh`/`rules` default to a single device and the standard rules. Parameters restored from
  scratch are randomly initialized (from `rng`) in place.
  """
  single = mesh is None  # plain single-device arrays, like the rest of a single-device run
  if single:
    mesh = partitioning.create_mesh((1, 1), devices=jax.devices()[:1])
  rules = rules if rules is not None else partitioning.logical_rules()
  expected = expected_frozen(module)
  named = _flat(layer_stack.unstack_layers(_unflat(expected)))  # the checkpoint's names and shapes
  leaves = open_backbone(path)
  mapping = resolve(list(named), list(leaves), assignment_map, fallback_to_scratch)
  check(mapping, leaves, named, strict)
  fresh = {}
  if any(s is None for s in mapping.values()):
    rng = rng if rng is not None else jax.random.PRNGKey(0)
    fresh = _flat(params_lib.init_random_frozen(module, rng, mesh, rules, dtype, trainable))
  sources = _module_sources(mapping, leaves, fresh, module.cfg.scan_layers)
  shardings = _flat(params_lib.shardings(module, mesh, rules)[1])
  groups: dict[Any, dict[str, t5x.Leaf]] = {}
  for name, leaf in sources.items():
    if leaf is not None:
      groups.setdefault(_stored_dtype(name, dtype, trainable), {})[name] = leaf
  flat = {}
  for group_dtype, group in groups.items():
    restored = t5x.materialize(group, None if single else _unflat({n: shardings[n] for n in group}),
                               group_dtype)
    flat.update(_flat(restored))
  for name in (n for n, leaf in sources.items() if leaf is None):  # wholly from scratch
    flat[name] = jax.device_put(fresh[name], jax.devices()[0]) if single else fresh[name]
  return _unflat(flat)


def _stored_dtype(name: str, dtype: Any, trainable: Sequence[str]) -> Any:
  """Matrices (kernels, embedding) take `dtype`; norm scales and relative-position tables stay
  float32 as the forward pass uses them in float32 (the same split as `model.cast_frozen`), and
  so does whatever trains."""
  if model_lib.is_trainable(name, trainable):
    return "float32"
  return dtype if _is_matrix(name) or dtype is None else "float32"


def _module_sources(mapping: dict[str, Optional[str]], leaves: dict[str, t5x.Leaf],
                    fresh: dict[str, jax.Array], scanned: bool) -> dict[str, Optional[t5x.Leaf]]:
  """Module parameter name -> the leaf to read it from, None where it is wholly from scratch.

  With scanned layers each stacked parameter reads its `layers_{i}` leaves; in a stack that is
  only partly in the checkpoint (a deeper model, or layers remapped to None) the missing layers
  are read from the fresh random weights.
  """
  by_name = {n: leaves[s] if s else None for n, s in mapping.items()}
  if not scanned:
    return by_name
  out = {}
  for name, parts in _flat(layer_stack.stack_layers(_unflat(by_name), stack=list)).items():
    if isinstance(parts, list):  # one stacked parameter's layers
      if all(p is None for p in parts):
        parts = None
      else:
        if any(p is None for p in parts):
          host = np.asarray(multihost.fetch(fresh[name]))
          parts = [t5x.ArrayLeaf(host[i]) if p is None else p for i, p in enumerate(parts)]
        parts = t5x.StackedLeaf(parts)
    out[name] = parts
  return out


def is_training_checkpoint(path: str) -> bool:
  """Whether `path` is a training run's `checkpoint_<step>` folder (or its `state/`)."""
  folder = os.path.abspath(path)
  if os.path.basename(folder) == "state":
    folder = os.path.dirname(folder)
  return bool(_STEP_DIR.match(os.path.basename(folder))) and os.path.isdir(os.path.join(folder, "state"))


def restore_trained(module: model_lib.PromptT5, path: str) -> dict:
  """Every parameter outside the backbone (the prompt and the methods' subtrees) from a training
  checkpoint (`MODEL_DIR/checkpoint_<step>`), checked name by name and shape by shape against
  `module`: the way to evaluate what no prompt file holds (IA3, per-layer and decoder prompts, a
  multi-task prompt's parts)."""
  stored = {n[len(_TRAINED):]: leaf for n, leaf in reader.open_any(path).leaves.items() if n.startswith(_TRAINED)}
  abstract = nn.meta.unbox(params_lib.abstract_params(module))
  expected = _flat(model_lib.split(abstract, model_lib.OUTSIDE_BACKBONE)[0])
  missing, extra = sorted(set(expected) - set(stored)), sorted(set(stored) - set(expected))
  if missing or extra:
    raise ValueError(f"the training checkpoint {path} holds {', '.join(sorted(stored)[:4]) or 'no parameters'} "
                     f"but the model outside its backbone has {', '.join(sorted(expected)[:4]) or 'nothing'}"
                     f"{f' (it lacks {missing[0]})' if missing else ''}{f' (it has {extra[0]} too)' if extra else ''}: "
                     "evaluate it with the gin files of the run that trained it")
  for name, want in expected.items():
    if tuple(stored[name].shape) != tuple(want.shape):
      raise ValueError(f"{name}: the training checkpoint {path} has shape {tuple(stored[name].shape)} but the "
                       f"model expects {tuple(want.shape)}: evaluate it with the settings it was trained with")
  return jax.tree.map(jax.numpy.asarray, _unflat(t5x.materialize(stored, None, "float32")))


def restore_prompt(module: model_lib.PromptT5, frozen: dict, *, path: Optional[str] = None,
                   initializer: Optional[prompts_lib.Initializer] = None,
                   rng: Optional[jax.Array] = None) -> dict:
  """The prompt subtree: from a `.npy` / PEFT folder when `path` is given, else the initializer.
  A training checkpoint as `path` gives every parameter outside the backbone (`restore_trained`)."""
  shape = prompts_lib.prompt_shape(module.prompt_length, module.cfg.emb_dim, module.num_prompts)
  if path is not None and is_training_checkpoint(path):
    return restore_trained(module, path)
  if path is not None:
    value = prompt_io.load_prompt(path, shape)
    return {model_lib.PROMPT_KEY: {"prompt": jax.numpy.asarray(value)}}
  rng = rng if rng is not None else jax.random.PRNGKey(0)
  return model_lib.init_prompt(module, initializer or prompts_lib.random_uniform(), rng, frozen)
