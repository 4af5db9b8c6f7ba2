"""Validators for settings the runs share: each refuses a bad value with a one-line UsageError."""
from __future__ import annotations

import gin

from prompt_tuning.config.errors import UsageError


def require(value, macro: str, example: str):
  """`value`, refused when it was never set (None or gin.REQUIRED)."""
  if value is None or value is gin.REQUIRED:
    raise UsageError(f"{macro} is not set: add --gin.{macro}={example} or bind it in a gin file")
  return value


def local_folder(path: str, macro: str) -> str:
  """`path`, refused in one line when it is a URL: outputs are written with local file
  operations (atomic renames), which object stores such as gs:// do not offer."""
  if "://" in str(path):
    raise UsageError(f"{macro} {path!r} is not a local folder: outputs are written with local file "
                     "operations; use a local or shared folder (e.g. the bucket mounted with gcsfuse)")
  return path
