"""A warning before training when the targets need token ids the frozen model cannot tell apart.

A model pretrained on a small corpus never learns the ids its corpus lacks. The quickstart's
(scripts/pretrain_quickstart_model.py) uses 175 of T5's 32,128 ids and ties the output-layer
columns of all others to one shared column, so those 31,953 ids always get the same logit:
no prompt can make it produce, or score apart, a label such as "yes" or "no". Such ids are found
cheaply: one matrix-vector product projects every column of the output layer
(`decoder/logits_dense/kernel`, [d_model, vocab]) onto a fixed random direction, ids with equal
projections are candidates, and one exact column comparison confirms each. Released T5
checkpoints have no two equal columns, so for them this never warns. A trainable output layer
(model tuning) can learn the columns apart: then nothing is checked.
"""
from __future__ import annotations

import sys
from typing import Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from prompt_tuning.model import prompted as model_lib
from prompt_tuning.parallel import multihost

KERNEL = ("decoder", "logits_dense", "kernel")
_SHOWN = 5


def indistinct_ids(params, ids: Iterable[int]) -> dict[int, int]:
  """{id: how many other ids share its output-layer column exactly}, for those of `ids` that
  share it with any (none when the parameters hold no output layer)."""
  kernel = params
  for key in KERNEL:
    kernel = kernel.get(key) if isinstance(kernel, dict) else None
  ids = sorted(set(int(i) for i in ids))
  if kernel is None or not ids:
    return {}
  probe = jax.random.normal(jax.random.PRNGKey(0), (kernel.shape[0],), jnp.float32)
  projection = np.asarray(multihost.fetch(probe @ jnp.asarray(kernel, jnp.float32)))
  shared = {}
  for i in ids:
    others = np.flatnonzero(projection == projection[i])
    others = others[others != i]
    if len(others) and np.array_equal(np.asarray(multihost.fetch(kernel[:, i])),
                                      np.asarray(multihost.fetch(kernel[:, int(others[0])]))):
      shared[i] = len(others)
  return shared


def warn_indistinct_targets(params, evaluator, trainable: Sequence[str] = model_lib.DEFAULT_TRAINABLE) -> str:
  """Prints (primary host) and returns a warning when the evaluation targets use such ids."""
  if model_lib.is_trainable("/".join(KERNEL), trainable):
    return ""
  ids = {int(t) for data in evaluator.tasks for e in data.examples for t in np.asarray(e["targets"])} - {0, 1}
  shared = indistinct_ids(params, ids)
  if not shared:
    return ""
  vocabulary = evaluator.tasks[0].task.output_features["targets"].vocabulary
  shown = ", ".join(f"{vocabulary.decode([i])!r} (id {i}, with {n} others)" for i, n in list(shared.items())[:_SHOWN])
  more = f" and {len(shared) - _SHOWN} more" if len(shared) > _SHOWN else ""
  message = (f"warning: the targets use {len(shared)} token id(s) whose output-layer column the frozen "
             f"model shares exactly with other ids: {shown}{more}. It cannot produce or score these "
             "apart, so labels made of them stay at chance (a model pretrained on a small corpus, like "
             "the quickstart's, knows only its corpus's ids); use labels it has learned")
  if multihost.is_primary():
    print(message, file=sys.stderr)
  return message
