"""Never save a non-finite state: which arrays of a tree hold a NaN or an infinity.

Every writer of trainable state (training checkpoints, prompt files) refuses a tree in which
this finds anything, and the train loop asks it before each save, so that it can name the step
and the last checkpoint that is still finite.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from prompt_tuning.parallel import multihost


class NonFiniteError(ValueError):
  """A state that holds NaN or infinite values was about to be saved (or was read back)."""


def _name(path) -> str:
  parts = []
  for key in path:
    for attr in ("key", "name", "idx"):
      if hasattr(key, attr):
        parts.append(str(getattr(key, attr)))
        break
  return "/".join(parts)


@jax.jit
def _device_flags(arrays: list) -> list:
  return [jnp.all(jnp.isfinite(x)) for x in arrays]


def nonfinite(tree: Any) -> list[str]:
  """'/'-joined names of the floating-point arrays of `tree` with a NaN or infinite value.

  Device arrays are reduced where they live (one boolean each comes back), so checking a
  sharded state costs no transfer of the state itself.
  """
  leaves = [(_name(p), x) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]
            if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.inexact)]
  on_device = [(n, x) for n, x in leaves if isinstance(x, jax.Array)]
  on_host = [(n, x) for n, x in leaves if not isinstance(x, jax.Array)]
  bad = [n for n, x in on_host if not np.isfinite(np.asarray(x)).all()]
  if on_device:
    flags = multihost.fetch(_device_flags([x for _, x in on_device]))
    bad += [n for (n, _), ok in zip(on_device, flags) if not bool(ok)]
  return sorted(bad)


def refuse_nonfinite(tree: Any, what: str) -> None:
  """Raises NonFiniteError naming the arrays of `tree` that are not finite (`what`: the file)."""
  bad = nonfinite(tree)
  if bad:
    shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
    raise NonFiniteError(f"{what}: {shown} hold NaN or infinite values; a non-finite state is never saved")
