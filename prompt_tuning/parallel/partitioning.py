"""A (data, model) device mesh and T5X-style logical axis rules.

Every parameter and activation of the model is named with logical axes (`batch`, `embed`,
`heads`, ...); the rules below map them onto the two mesh axes, as T5X's standard rules do.
With 1-D parameter partitioning (the default) the batch is split over `data`, heads/MLP/
vocabulary over `model`, and the prompt is replicated (it is tiny, and replication lets any host
save it as numpy). 2-D parameter partitioning (T5X's `parameter_partitioning_dims=2`) also
splits every weight's `embed` dimension over `data`, FSDP-style: weights, their gradients and
their optimizer statistics take 1 / (data x model) of the memory on each device instead of
1 / model, which model tuning of XL and XXL needs; activations keep `embed` whole, since their
`batch` already uses `data`.
"""
from __future__ import annotations

import contextlib
from typing import Any, Optional, Sequence

import jax
import numpy as np
from flax import linen as nn
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

AXES = ("data", "model")

STANDARD_RULES: tuple[tuple[str, Optional[str]], ...] = (
    ("batch", "data"),
    ("vocab", "model"),
    ("mlp", "model"),
    ("heads", "model"),
    ("joined_kv", "model"),
    ("embed", None),
    ("kv", None),
    ("length", None),
    ("relpos_buckets", None),
    ("layers", None),  # the stacked axis of scanned layers: every device holds all layers
    ("prompt", None),
    ("prompt_embed", None),
    ("prompt_tasks", None),
    ("prompt_hidden", None),  # features inside the prompt methods' small networks (replicated)
)


def create_mesh(shape: Sequence[int] = (-1, 1), devices: Optional[Sequence[Any]] = None) -> Mesh:
  """A (data, model) mesh over all devices (every host's, in a multi-host job).

  `shape` may use -1 for one axis, e.g. (-1, 2) = two-way model parallelism, data over the rest.
  """
  devices = list(jax.devices() if devices is None else devices)
  data, model = shape
  if data == -1 and model == -1:
    raise ValueError("mesh shape: at most one of (data, model) may be -1")
  if data == -1:
    data = len(devices) // max(model, 1)
  if model == -1:
    model = len(devices) // max(data, 1)
  if data * model != len(devices):
    raise ValueError(f"mesh shape ({data}, {model}) needs {data * model} devices but "
                     f"{len(devices)} are available: set MESH_SHAPE so the product matches")
  try:
    from jax.experimental import mesh_utils
    grid = mesh_utils.create_device_mesh((data, model), devices=devices)
  except (ValueError, NotImplementedError, AssertionError):  # unusual topologies: plain order
    grid = np.asarray(devices).reshape(data, model)
  return Mesh(grid, AXES)


PARAMETER_PARTITIONING_DIMS = (1, 2)


def logical_rules(additional: Sequence[tuple[str, Optional[str]]] = (),
                  parameter_partitioning_dims: int = 1) -> tuple:
  """Standard rules, with `additional` ones taking precedence (first match wins); with
  `parameter_partitioning_dims=2`, `embed` goes over `data` (after `batch`, which keeps `data`
  for activations: flax gives a mesh axis to one dimension of an array at most)."""
  if parameter_partitioning_dims not in PARAMETER_PARTITIONING_DIMS:
    raise ValueError(f"parameter_partitioning_dims must be 1 or 2, not {parameter_partitioning_dims!r}")
  rules = STANDARD_RULES
  if parameter_partitioning_dims == 2:
    rules = tuple(("embed", "data") if name == "embed" else (name, axis) for name, axis in rules)
  return tuple(additional) + rules


def check_divisible(shapes: Any, shardings: Any) -> None:
  """Every array's dimensions divide evenly over the mesh axes its sharding splits them over
  (a ValueError naming the first that does not)."""
  for (path, shape), sharding in zip(jax.tree_util.tree_flatten_with_path(shapes)[0],
                                     jax.tree.leaves(shardings)):
    for dim, axes in zip(shape.shape, sharding.spec):
      axes = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
      parts = int(np.prod([sharding.mesh.shape[a] for a in axes]))
      if dim % parts:
        name = "/".join(str(getattr(k, "key", k)) for k in path)
        raise ValueError(f"{name} {list(shape.shape)} cannot be split {parts} ways over mesh axis "
                         f"{'x'.join(axes)} (a dimension of {dim})")


def logical_specs(boxed_tree: Any) -> Any:
  """Logical PartitionSpecs of a tree of `nn.Partitioned` boxes (as `init` returns them)."""
  return nn.get_partition_spec(boxed_tree)


def mesh_shardings(logical_tree: Any, mesh: Mesh, rules: Sequence) -> Any:
  """NamedShardings on `mesh` for a tree of logical PartitionSpecs."""
  return nn.logical_to_mesh_sharding(logical_tree, mesh, rules)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) dimension over `data`, the rest replicated."""
  return NamedSharding(mesh, PartitionSpec("data"))


@contextlib.contextmanager
def activation_context(mesh: Mesh, rules: Sequence):
  """Makes the model's activation annotations bind to `mesh` under `rules` while tracing."""
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    yield
