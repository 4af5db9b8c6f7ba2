"""Where checkpoint bytes live: local folders or `gs://` buckets, both read through tensorstore.

Going through tensorstore's kvstore drivers (`file`, `gcs`) keeps TensorFlow's gfile out of the
package while still reading the released checkpoints in place on Google Cloud Storage.
"""
from __future__ import annotations

import os
import posixpath

import tensorstore as ts


def is_remote(path: str) -> bool:
  return path.startswith("gs://")


def join(path: str, *parts: str) -> str:
  return posixpath.join(path, *parts) if is_remote(path) else os.path.join(path, *parts)


def kvstore(path: str) -> dict:
  """A tensorstore kvstore spec for a folder (or file) path."""
  if is_remote(path):
    bucket, _, key = path[len("gs://"):].partition("/")
    return {"driver": "gcs", "bucket": bucket, "path": key}
  return {"driver": "file", "path": os.path.abspath(path)}


def _split(path: str) -> tuple[str, str]:
  head, tail = (posixpath.split if is_remote(path) else os.path.split)(path.rstrip("/"))
  return head, tail


def read_bytes(path: str) -> bytes:
  if not is_remote(path):
    with open(path, "rb") as f:
      return f.read()
  head, tail = _split(path)
  result = ts.KvStore.open(kvstore(head + "/")).result().read(tail).result()
  if result.state != "value":
    raise FileNotFoundError(f"{path} does not exist")
  return bytes(result.value)


def exists(path: str) -> bool:
  """True for an existing file; for `gs://` also for a folder (any key under the prefix)."""
  if not is_remote(path):
    return os.path.exists(path)
  head, tail = _split(path)
  store = ts.KvStore.open(kvstore(head + "/")).result()
  if store.read(tail).result().state == "value":
    return True
  return bool(store.list(ts.KvStore.KeyRange(tail + "/", tail + "0")).result())
