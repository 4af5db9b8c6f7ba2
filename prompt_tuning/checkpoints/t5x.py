"""Reading (and writing) T5X checkpoints without T5X or TensorFlow.

Three on-disk layouts exist, all handled here:
  * "msgpack": one flax-msgpack file, every array inline (oldest checkpoints, tiny tests);
  * "tensorstore": the legacy T5X layout of the released checkpoints: a msgpack `checkpoint` file
    whose large arrays are zarr specs pointing at `target.<dotted.name>` folders (gzip);
  * "orbax" / "ocdbt": Orbax checkpoints, either one zarr folder per array (named by a
    `PLACEHOLDER://` string in `checkpoint`, or by `_METADATA` when written with
    `use_ocdbt=False`), or a single OCDBT key-value store (`manifest.ocdbt`).

Everything becomes a flat `{name: Leaf}` map; a Leaf reads any rectangular slice, so a sharded
restore reads only each device's shard and casts it on the way (an XXL f32 checkpoint never
exists whole on the host).
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import os
import shutil
import uuid
from typing import Any, Callable, Mapping, Optional

import jax
import msgpack
import numpy as np
import tensorstore as ts
from flax import traverse_util

from prompt_tuning.checkpoints import _store

LAYOUTS = ("msgpack", "tensorstore", "orbax", "ocdbt")
# Where the model parameters sit inside each layout's state tree, most specific first.
# (The last two: this project's training checkpoints, which hold the trainable parameters.)
PARAM_ROOTS = ("optimizer/target", "_optimizer/target", "state/target", "target", "params",
               "train_state/params", "train_state/prompt")
_PLACEHOLDER = "PLACEHOLDER://"
_EXT_NDARRAY, _EXT_NPSCALAR = 1, 3  # flax.serialization's msgpack extension codes


# ----------------------------------------------------------------------------- leaves


class Leaf:
  """One stored array: shape, dtype, and a reader for any slice of it."""
  shape: tuple[int, ...]
  dtype: np.dtype

  def read(self, index: tuple = ()) -> np.ndarray:
    raise NotImplementedError

  def value(self) -> np.ndarray:
    return self.read(())


class ArrayLeaf(Leaf):
  """An array already in host memory (inline msgpack, memory-mapped files)."""

  def __init__(self, array: np.ndarray, transform: Optional[Callable] = None):
    self._array = transform(array) if transform else array
    self.shape, self.dtype = tuple(self._array.shape), np.dtype(self._array.dtype)

  def read(self, index: tuple = ()) -> np.ndarray:
    out = np.asarray(self._array[index])
    return out if out.flags.c_contiguous else out.copy()


class CheckpointReadError(ValueError):
  """A stored array that cannot be read as recorded: missing or truncated data, metadata that
  disagrees with the checkpoint's record, a file cut short. The message names the array."""


def _reason(err: BaseException) -> str:
  return " ".join(str(err).split(" [tensorstore_spec")[0].split())


class ZarrLeaf(Leaf):
  """A zarr array behind a tensorstore spec, opened on first use.

  Reads are strict: a chunk that is missing is an error (tensorstore would otherwise fill it
  with zeros), and a `.zarray` whose shape or dtype disagrees with what the checkpoint records
  is an error, each naming the array.
  """

  def __init__(self, name: str, spec: dict, context: Optional[ts.Context] = None):
    self.name, self._context, self._store = name, context, None
    self._spec = {**spec, "fill_missing_data_reads": False}

  def assume(self, shape, dtype, compressor: str = "zstd") -> "ZarrLeaf":
    """Reads a folder whose `.zarray` is missing as one chunk of the given shape and dtype."""
    meta = {"shape": list(shape), "chunks": list(shape), "dtype": np.dtype(dtype).str,
            "compressor": {"id": compressor}}
    self._spec = {**self._spec, "metadata": meta}
    self._store = None
    return self

  def _open(self) -> ts.TensorStore:
    if self._store is None:
      kw = {"context": self._context} if self._context is not None else {}
      try:
        self._store = ts.open(self._spec, read=True, open=True, **kw).result()
      except ValueError as err:
        if "NOT_FOUND" not in str(err):  # e.g. the .zarray's shape or dtype is not the recorded one
          raise CheckpointReadError(f"array {self.name!r} does not open: {_reason(err)}; the checkpoint is "
                                    "damaged or was changed after it was written (copy it again)") from None
        # `.zarray` missing (as in some Orbax checkpoints): read with the spec's own metadata.
        meta = self._spec.get("metadata", {})
        if not {"shape", "chunks"} <= set(meta) or not (meta.get("dtype") or self._spec.get("dtype")):
          raise CheckpointReadError(f"cannot open array {self.name!r} ({_reason(err)}); its zarr metadata is "
                                    "missing and the checkpoint does not record it: the checkpoint is "
                                    "incomplete") from None
        self._store = ts.open(self._spec, read=True, assume_metadata=True, **kw).result()
    return self._store

  @property
  def shape(self):
    return tuple(self._open().shape)

  @property
  def dtype(self):
    return np.dtype(self._open().dtype.numpy_dtype)

  def read(self, index: tuple = ()) -> np.ndarray:
    store = self._open()
    try:
      return np.asarray((store[index] if index else store).read().result())
    except ValueError as err:  # a missing or truncated chunk
      raise CheckpointReadError(f"array {self.name!r} cannot be read: {_reason(err)}; the checkpoint "
                                "is damaged (copy it again)") from None


class StackedLeaf(Leaf):
  """Leaves of one shape stacked on a new leading axis (a scanned model's `layers` parameters
  read from `layers_{i}` arrays): a slice reads only the layers, and the part of each, it covers."""

  def __init__(self, parts: list[Leaf]):
    self._parts = list(parts)
    self.shape = (len(self._parts),) + tuple(self._parts[0].shape)
    self.dtype = np.result_type(*(part.dtype for part in self._parts))

  def read(self, index: tuple = ()) -> np.ndarray:
    index = tuple(index)
    layers, rest = (index[0], index[1:]) if index else (slice(None), ())
    chosen = range(len(self._parts))[layers]
    if isinstance(chosen, int):
      return self._parts[chosen].read(rest).astype(self.dtype, copy=False)
    return np.stack([self._parts[i].read(rest).astype(self.dtype, copy=False) for i in chosen])


# ----------------------------------------------------------------------------- opening


@dataclasses.dataclass
class Checkpoint:
  """A T5X checkpoint's arrays by '/'-joined name (e.g. `optimizer/target/encoder/...`).

  `root` names where the parameters are when the layout says so ("": every array is one, as in
  a Hugging Face folder read under T5X names); None: the first of PARAM_ROOTS present."""
  path: str
  layout: str
  leaves: dict[str, Leaf]
  root: Optional[str] = None

  @property
  def params_root(self) -> str:
    if self.root is not None:
      return self.root
    for root in PARAM_ROOTS:
      if any(n.startswith(root + "/") for n in self.leaves):
        return root
    return ""

  def params(self) -> dict[str, Leaf]:
    """The model parameters only (`target/...`), named as in the model (`encoder/...`)."""
    if self.root == "":
      return dict(self.leaves)
    root = self.params_root
    if not root:
      raise ValueError(f"{self.path}: no parameters under any of {', '.join(PARAM_ROOTS)}; "
                       "this is not a model checkpoint")
    return {n[len(root) + 1:]: leaf for n, leaf in self.leaves.items() if n.startswith(root + "/")}

  def leaf(self, name: str) -> Leaf:
    """A leaf by full name, by name relative to the parameters, or with '.' for '/'."""
    for candidate in (name, name.replace(".", "/")):
      if candidate in self.leaves:
        return self.leaves[candidate]
      if self.params_root and f"{self.params_root}/{candidate}" in self.leaves:
        return self.leaves[f"{self.params_root}/{candidate}"]
    close = difflib.get_close_matches(name, list(self.leaves), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "; list the names with list_variables()"
    raise KeyError(f"{name!r} is not in checkpoint {self.path}{hint}")


def _checkpoint_dir(path: str) -> str:
  path = path.rstrip("/")
  if not _store.is_remote(path) and os.path.isfile(path):
    return os.path.dirname(path) or "."
  return path


def detect_layout(path: str) -> str:
  """One of LAYOUTS for a checkpoint folder (or, for "msgpack", a single file)."""
  return _open(path).layout


def open_checkpoint(path: str) -> Checkpoint:
  """Indexes a T5X checkpoint's arrays (reads only the small msgpack/metadata files)."""
  return _open(path)


def _open(path: str) -> Checkpoint:
  folder = _checkpoint_dir(path)
  for sub in ("", "state"):  # Orbax managers may nest the state item one level down
    base = _store.join(folder, sub) if sub else folder
    ocdbt = _store.exists(_store.join(base, "manifest.ocdbt"))
    if ocdbt or _store.exists(_store.join(base, "_METADATA")):
      return Checkpoint(path, "ocdbt" if ocdbt else "orbax", _ocdbt_leaves(base, ocdbt))
  file = path if (not _store.is_remote(path) and os.path.isfile(path)) else _store.join(folder, "checkpoint")
  if not _store.exists(file):
    raise FileNotFoundError(f"no T5X checkpoint at {path}: expected a `checkpoint` msgpack file or an "
                            "Orbax folder (manifest.ocdbt / _METADATA); pass the checkpoint_N folder")
  tree = _unpack(_store.read_bytes(file), file)
  leaves, kinds = {}, set()
  context = ts.Context()
  for name, value in _walk(tree):
    if isinstance(value, dict):  # a zarr spec (legacy T5X layout)
      kinds.add("tensorstore")
      leaves[name] = ZarrLeaf(name, _localize(value, folder), context)
    elif isinstance(value, str) and value.startswith(_PLACEHOLDER):
      kinds.add("orbax")
      spec = {"driver": "zarr", "kvstore": _folder_kvstore(_store.join(folder, value[len(_PLACEHOLDER):]))}
      leaves[name] = ZarrLeaf(name, spec, context)
    elif isinstance(value, _Unreadable):
      raise CheckpointReadError(f"array {name!r} of {file} cannot be read: {value.reason}")
    elif isinstance(value, np.ndarray):
      leaves[name] = ArrayLeaf(value)
    elif isinstance(value, (int, float, np.generic)) and not isinstance(value, bool):
      leaves[name] = ArrayLeaf(np.asarray(value))
  layout = "orbax" if "orbax" in kinds else "tensorstore" if kinds else "msgpack"
  return Checkpoint(path, layout, dict(sorted(leaves.items())))


def _folder_kvstore(path: str) -> dict:
  spec = _store.kvstore(path)
  spec["path"] = spec["path"].rstrip("/") + "/"
  return spec


def _walk(tree: Any, prefix: str = ""):
  """(name, value) pairs of the msgpack tree; zarr specs (dicts with `driver`) count as values."""
  if isinstance(tree, dict) and not ("driver" in tree and "kvstore" in tree):
    for k, v in tree.items():
      yield from _walk(v, f"{prefix}/{k}" if prefix else str(k))
  elif prefix:
    yield prefix, tree


def _localize(spec: dict, folder: str) -> dict:
  """Points a stored spec (kvstore `gfile`, path relative or absolute) at this checkpoint folder."""
  spec = copy.deepcopy(spec)
  stored = spec["kvstore"].get("path", "").rstrip("/")
  spec["kvstore"] = _folder_kvstore(_store.join(folder, stored.split("/")[-1]))
  return spec


def _ocdbt_leaves(base: str, ocdbt: bool = True) -> dict[str, Leaf]:
  """Arrays of an Orbax checkpoint, named from `_METADATA` (or the store's own keys): in one
  OCDBT store, or (`ocdbt=False`, Orbax's `use_ocdbt=False`) one zarr folder per array."""
  kv_base = _folder_kvstore(base)
  context = ts.Context()
  keys, driver = [], "zarr"
  meta_path = _store.join(base, "_METADATA")
  if _store.exists(meta_path):
    try:
      meta = json.loads(_store.read_bytes(meta_path))
    except ValueError as err:
      raise CheckpointReadError(f"{meta_path} cannot be read ({err}): the file is cut short or "
                                "damaged; copy the checkpoint again") from None
    driver = "zarr3" if meta.get("use_zarr3") else "zarr"
    for entry in meta.get("tree_metadata", {}).values():
      if not (entry.get("value_metadata") or {}).get("skip_deserialize"):  # empty nodes hold no array
        keys.append([str(k["key"]) for k in entry["key_metadata"]])
  else:
    listing = ts.KvStore.open({"driver": "ocdbt", "base": kv_base}, context=context).result().list().result()
    for key in (k.decode() for k in listing):
      if key.endswith("/.zarray") or key.endswith("/zarr.json"):
        driver = "zarr3" if key.endswith("zarr.json") else "zarr"
        keys.append(key.rsplit("/", 1)[0].split("."))
  leaves = {}
  for parts in keys:
    kvstore = ({"driver": "ocdbt", "base": kv_base, "path": ".".join(parts)} if ocdbt
               else _folder_kvstore(_store.join(base, ".".join(parts))))
    spec = {"driver": driver, "kvstore": kvstore}
    leaves["/".join(parts)] = ZarrLeaf("/".join(parts), spec, context)
  return dict(sorted(leaves.items()))


class _Unreadable:
  """An inline array whose bytes do not match its recorded shape and dtype (named when found)."""

  def __init__(self, reason: str):
    self.reason = reason


def _ext_hook(code: int, data: bytes):
  if code in (_EXT_NDARRAY, _EXT_NPSCALAR):  # both are (shape, dtype name, raw bytes)
    shape, dtype, buf = msgpack.unpackb(data)
    try:
      return np.frombuffer(buf, dtype=jax.numpy.dtype(dtype)).reshape(shape)
    except (ValueError, TypeError) as err:
      return _Unreadable(f"{len(buf)} bytes do not hold {dtype} values of shape {tuple(shape)} ({err})")
  return msgpack.ExtType(code, data)


def _unpack(data: bytes, file: str = "checkpoint") -> Any:
  try:
    tree = msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)
  except (ValueError, msgpack.UnpackException) as err:
    raise CheckpointReadError(f"{file} cannot be read ({err}): the file is cut short or damaged; "
                              "copy the checkpoint again") from None
  return _unchunk(tree)


def _unchunk(tree: Any) -> Any:
  """Reassembles arrays that flax split into `__msgpack_chunked_array__` pieces."""
  if not isinstance(tree, dict):
    return tree
  if tree.get("__msgpack_chunked_array__"):
    shape = tuple(tree["shape"][str(i)] for i in range(len(tree["shape"])))
    chunks = [tree["chunks"][str(i)] for i in range(len(tree["chunks"]))]
    if any(isinstance(c, _Unreadable) for c in chunks):
      return next(c for c in chunks if isinstance(c, _Unreadable))
    flat = np.concatenate([c.reshape(-1) for c in chunks])
    if flat.size != int(np.prod(shape)):
      return _Unreadable(f"its chunks hold {flat.size} values, not the {int(np.prod(shape))} of shape {shape}")
    return flat.reshape(shape)
  return {k: _unchunk(v) for k, v in tree.items()}


# ----------------------------------------------------------------------------- reading


def list_variables(path: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
  """Every array of the checkpoint (parameters and optimizer state): name -> (shape, dtype)."""
  return {n: (leaf.shape, leaf.dtype) for n, leaf in open_checkpoint(path).leaves.items()}


def read_variable(path: str, name: str) -> np.ndarray:
  """One array, e.g. `read_variable(ckpt, "token_embedder/embedding")`, in its stored dtype."""
  return open_checkpoint(path).leaf(name).value()


def materialize(leaves: Mapping[str, Leaf], shardings: Any = None, dtype: Any = None) -> dict:
  """Nested dict of jax arrays from leaves, each read shard by shard and cast to `dtype`.

  With `shardings` (a nested dict of `jax.sharding.Sharding`, e.g. the frozen shardings of
  `model.params.shardings`) exactly those names are read, each device getting only its slice;
  without, every leaf goes whole to the default device. Floating arrays are cast to `dtype`.
  """
  if shardings is None:
    wanted = {n: None for n in leaves}
  else:
    wanted = traverse_util.flatten_dict(shardings, sep="/")
  out = {}
  for name, sharding in wanted.items():
    if name not in leaves:
      raise ValueError(f"parameter {name!r} is not in the checkpoint: the model and the checkpoint "
                       "disagree (check the T5 config, or restore it from scratch)")
    leaf = leaves[name]
    target = np.dtype(dtype) if dtype is not None and np.issubdtype(leaf.dtype, np.floating) else leaf.dtype
    if sharding is None:
      out[name] = jax.numpy.asarray(leaf.value().astype(target, copy=False))
      continue
    out[name] = jax.make_array_from_callback(leaf.shape, sharding, _shard_reader(leaf, target), dtype=target)
  return traverse_util.unflatten_dict(out, sep="/")


def _shard_reader(leaf: Leaf, dtype: np.dtype) -> Callable:
  cache: dict = {}  # replicas of the same slice (e.g. over the data axis) are read once

  def read(index):
    key = tuple((s.start, s.stop, s.step) if isinstance(s, slice) else s for s in index)
    if key not in cache:
      cache[key] = leaf.read(tuple(index)).astype(dtype, copy=False)
    return cache[key]
  return read


def load_t5x_params(path: str, *, shardings: Any = None, dtype: Any = None) -> dict:
  """The parameters (`target/...` only) of a T5X checkpoint in any layout, as jax arrays.

  Optimizer state and step of the pretrained checkpoint are never read. See `materialize` for
  `shardings` and `dtype`; `path` may be local or `gs://`.
  """
  return materialize(open_checkpoint(path).params(), shardings, dtype)


# ----------------------------------------------------------------------------- writing

_CHUNK_BYTES = 64 * 2**20  # T5X also keeps zarr chunks at or below 64 MiB


def write_t5x(path: str, params: Mapping, step: int = 0) -> str:
  """Writes `params` (arrays, or `Leaf`s read one at a time) as a legacy T5X checkpoint (msgpack
  + gzip zarr folders), atomically.

  The result is what T5X itself restores (`optimizer/target/...`), without optimizer state:
  restore it in T5X with `fallback_to_scratch=True` for the optimizer. Local paths only.
  """
  if _store.is_remote(path):
    raise ValueError(f"write_t5x writes local folders; copy {path} to GCS afterwards (gsutil -m cp -r)")
  if os.path.exists(path):
    raise FileExistsError(f"{path} already exists: choose a new checkpoint folder")
  tmp = f"{path.rstrip('/')}.tmp-{uuid.uuid4().hex[:8]}"
  os.makedirs(tmp)
  specs = {}
  for name, value in traverse_util.flatten_dict(dict(params), sep="/").items():
    array = value.value() if isinstance(value, Leaf) else np.asarray(jax.device_get(value))
    folder = "target." + name.replace("/", ".")
    row_bytes = max(1, array[:1].nbytes) if array.ndim else array.nbytes
    chunks = list(array.shape)
    if array.ndim:
      chunks[0] = max(1, min(array.shape[0], _CHUNK_BYTES // row_bytes))
    spec = {"driver": "zarr", "kvstore": {"driver": "gfile", "path": folder},
            "metadata": {"shape": list(array.shape), "chunks": chunks, "dtype": array.dtype.str,
                         "compressor": {"id": "gzip", "level": 1}}}
    local = {**spec, "kvstore": _folder_kvstore(os.path.join(tmp, folder))}
    ts.open(local, create=True, open=False).result().write(array).result()
    specs[name] = spec
  state = {"version": 3, "optimizer": {"target": traverse_util.unflatten_dict(specs, sep="/"),
                                       "state": {"step": _pack_array(np.asarray(step, np.int32))}}}
  with open(os.path.join(tmp, "checkpoint"), "wb") as f:
    f.write(msgpack.packb(state, use_bin_type=True))
  try:
    os.rename(tmp, path)
  except OSError:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return path


def _pack_array(array: np.ndarray) -> msgpack.ExtType:
  payload = msgpack.packb((list(array.shape), array.dtype.name, array.tobytes()), use_bin_type=True)
  return msgpack.ExtType(_EXT_NDARRAY, payload)
