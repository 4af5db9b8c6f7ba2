"""Gin for the entry points: the `configs/` search path, `--gin.NAME=VALUE` bindings, config.gin.

Files are looked up as given (relative to the working directory), then in each search path,
then in this project's `configs/` folder and the folder above it, so `runs/quickstart.gin` and
`configs/runs/quickstart.gin` both work from anywhere. `configs/` is PROMPT_TUNING_CONFIGS if
set, else the copy a non-editable install ships as `prompt_tuning/configs/`, else the first one
found walking up from this package (editable install, source checkout) or the working directory.

The gin files import the modules whose functions they bind (`import prompt_tuning.runs.configurables`,
`import prompt_tuning.runs.train_loop`), so parsing needs nothing registered beforehand.
"""
from __future__ import annotations

import ast
import logging
import os
import tempfile
from typing import Optional, Sequence

import gin

from prompt_tuning.config.errors import UsageError

CONFIGS_ENV = "PROMPT_TUNING_CONFIGS"


# ----------------------------------------------------------------------------- search paths


def _walk_up(start: str):
  path = os.path.abspath(start)
  while True:
    yield path
    parent = os.path.dirname(path)
    if parent == path:
      return
    path = parent


def find_configs_dir() -> Optional[str]:
  """This project's `configs/` folder (the one holding runs/prompt_finetune.gin), or None."""
  package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  candidates = [os.environ.get(CONFIGS_ENV, ""), os.path.join(package, "configs")]  # a packaged copy
  for start in (package, os.getcwd()):
    candidates += [os.path.join(p, "configs") for p in _walk_up(start)]
  for folder in candidates:
    if folder and os.path.isfile(os.path.join(folder, "runs", "prompt_finetune.gin")):
      return folder
  return None


def search_paths(extra: Sequence[str] = ()) -> list[str]:
  paths = [os.getcwd()] + [p for p in extra if p]
  configs = find_configs_dir()
  if configs:
    paths += [configs, os.path.dirname(configs)]
  return paths


# ----------------------------------------------------------------------------- parsing


def _as_binding(text: str) -> str:
  """`NAME=VALUE` with VALUE quoted when it is a bare word or path (`MODEL_DIR=/tmp/x`)."""
  name, sep, value = text.partition("=")
  if not sep:
    raise UsageError(f"--gin.{text}: expected --gin.NAME=VALUE")
  value = value.strip()
  if value and value[0] not in "@%" and value not in ("None", "True", "False"):
    try:
      ast.literal_eval(value)
    except (ValueError, SyntaxError):
      value = repr(value)
  return f"{name.strip()} = {value}"


def _resolve_file(path: str, paths: Sequence[str]) -> str:
  for base in [""] + list(paths):
    candidate = os.path.join(base, path) if base else path
    if os.path.isfile(candidate):
      return os.path.abspath(candidate)
  configs = find_configs_dir() or "configs/"
  raise UsageError(f"gin file {path!r} not found (looked in the working directory, "
                   f"--gin_search_paths and {configs}); check the --gin_file path")


def _one_line(err: BaseException) -> str:
  text = " ".join(str(err).split())
  return text.split(" In file ")[0].split(" No values supplied by Gin")[0]


def parse(gin_files: Sequence[str], bindings: Sequence[str] = (),
          extra_search_paths: Sequence[str] = ()) -> None:
  """Parses files then bindings; raises UsageError naming the bad file/binding."""
  if not gin_files:
    raise UsageError("no --gin_file given: pass e.g. --gin_file=runs/quickstart.gin")
  paths = search_paths(extra_search_paths)
  gin.clear_config(clear_constants=True)
  for path in paths:
    gin.add_config_file_search_path(path)
  files = [_resolve_file(f, paths) for f in gin_files]
  quiet = _DropPathNotFound()  # gin logs every search-path miss of an `include` as an error
  logging.getLogger().addFilter(quiet)
  try:
    gin.parse_config_files_and_bindings(files, [_as_binding(b) for b in bindings],
                                        finalize_config=False)
  except (ValueError, IOError, KeyError, SyntaxError, TypeError) as err:
    raise UsageError(f"bad gin config: {_one_line(err)} (check the --gin_file order and "
                     "--gin.NAME spellings; models/*.gin come before prompts/*.gin and runs/*.gin)") from err
  finally:
    logging.getLogger().removeFilter(quiet)


class _DropPathNotFound(logging.Filter):
  def filter(self, record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Path not found")


def write_config(model_dir: str, name: str = "config.gin") -> str:
  """Writes the parsed gin config to MODEL_DIR/name atomically (temp file + rename)."""
  os.makedirs(model_dir, exist_ok=True)
  path = os.path.join(model_dir, name)
  fd, tmp = tempfile.mkstemp(dir=model_dir, prefix=".tmp-", suffix=".gin")
  with os.fdopen(fd, "w") as f:
    f.write(gin.config_str())
  os.replace(tmp, path)
  return path
