"""Files written whole or not at all, with the permissions the user's umask gives.

A temporary file next to the target is written, then renamed over it, so a reader (or a run
killed midway) never sees half a file. The temporary file is created with mode 0666 (0777 for
scripts) minus the umask, as `open()` would, rather than `tempfile.mkstemp`'s private 0600,
so config.gin, prompts and manifests are as readable as everything else the user writes.
"""
from __future__ import annotations

import os
import uuid
from typing import Callable


def atomic_write(path: str, write: Callable[[str], None], executable: bool = False) -> str:
  """Calls `write(tmp_path)` to fill a temporary file, then renames it to `path`."""
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  tmp = os.path.join(folder, f".tmp-{uuid.uuid4().hex[:8]}-{os.path.basename(path)}")
  fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o777 if executable else 0o666)
  mode = os.fstat(fd).st_mode  # what the umask left
  os.close(fd)
  try:
    write(tmp)
    os.chmod(tmp, mode)  # in case `write` replaced the file (safetensors writes it anew, 0600)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  return path


def atomic_write_text(path: str, text: str, executable: bool = False) -> str:
  """`path` holding `text` (UTF-8), written atomically."""
  def write(tmp):
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(text)
  return atomic_write(path, write, executable)
