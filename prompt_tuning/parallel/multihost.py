"""Running one job over several hosts (TPU pod slices, multi-node GPU), as T5X does.

Every host runs the same program over one global mesh. Each host reads the same global batch
(prompt-tuning batches are small) and places only the rows its own devices hold; results that
are split over other hosts are gathered before the host reads them. Files are written by the
primary host (process 0) alone, the others waiting at a barrier, so a shared MODEL_DIR sees
each file once. With one process all of this reduces to the single-host behaviour.
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils


def is_primary() -> bool:
  """Whether this host writes files and prints the run's output."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Waits until every host reaches the barrier `name` (nothing to wait for on one host)."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def global_array(value: Any, sharding) -> jax.Array:
  """A global array laid out as `sharding` from a value every host holds in full."""
  if isinstance(value, jax.Array) and not value.is_fully_addressable:
    return value
  if jax.process_count() == 1:
    return jax.device_put(value, sharding)
  value = np.asarray(value)
  return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def fetch(tree: Any) -> Any:
  """The whole value of every array of `tree` as numpy, on every host (gathering if split)."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  def one(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      if x.is_fully_replicated:
        return np.asarray(x.addressable_data(0))
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)
  return jax.tree.map(one, tree)
