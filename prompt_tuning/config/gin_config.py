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
import dataclasses
import difflib
import inspect
import logging
import os
import re
from typing import Any, Optional, Sequence

import gin

from prompt_tuning.config import fileio
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
  if not value:  # `--gin.MODEL_DIR=`: an empty string, for the run's own checks to refuse
    value = "''"
  elif value[0] not in "@%" and value not in ("None", "True", "False"):
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
  for tail in (" In file ", " In bindings string", " No values supplied by Gin"):
    text = text.split(tail)[0]
  return text


def parse(gin_files: Sequence[str], bindings: Sequence[str] = (),
          extra_search_paths: Sequence[str] = (), queried: Sequence[str] = ()) -> None:
  """Parses files then `--gin.NAME=VALUE` bindings; raises UsageError naming the bad file or
  binding. A binding must take effect: its configurable and parameter must exist, and a macro
  must be used, i.e. referenced (`%NAME`) by some binding of the parsed config or read by the
  caller (`queried`, e.g. a script's `gin.query_parameter("%MIXTURE_OR_TASK_NAME")`). Macros
  that the files define and nothing references are left alone."""
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
    for path in files:
      gin.parse_config_file(path)
  except _GIN_ERRORS as err:
    raise UsageError(f"bad gin config: {_one_line(err)} (check the --gin_file order and "
                     "--gin.NAME spellings; models/*.gin come before prompts/*.gin and runs/*.gin)") from err
  finally:
    logging.getLogger().removeFilter(quiet)
  global _FLAG_NAMES
  _FLAG_NAMES = frozenset(b.partition("=")[0].strip() for b in bindings)
  for binding in bindings:
    try:
      gin.parse_config(_as_binding(binding))
    except _GIN_ERRORS as err:
      raise UsageError(f"--gin.{binding}: {_binding_problem(binding, err)}") from err
  _check_macros_used(bindings, queried)


_GIN_ERRORS = (ValueError, IOError, KeyError, SyntaxError, TypeError)
_FLAG_NAMES: frozenset = frozenset()


def bound_by_flag(name: str) -> bool:
  """Whether the last `parse` got `--gin.<name>=...` (a value the user asked for by name, as
  opposed to one a gin file supplies as the default)."""
  return name in _FLAG_NAMES


def _did_you_mean(name: str, known) -> str:
  close = difflib.get_close_matches(name, sorted(set(known)), n=3, cutoff=0.6)
  return f" (did you mean {' or '.join(close)}?)" if close else ""


def _binding_problem(binding: str, err: BaseException) -> str:
  """Why gin refused `configurable.param=VALUE`, with the closest known names when the
  configurable or the parameter does not exist; else gin's own reason."""
  key = binding.partition("=")[0].strip().rpartition("/")[2]
  selector, _, param = key.rpartition(".")
  if selector:
    configurable = gin.config._REGISTRY.get_match(selector)  # pylint: disable=protected-access
    if configurable is None:
      names = [n for full, _ in gin.config._REGISTRY.items() for n in (full, full.rpartition(".")[2])]  # pylint: disable=protected-access
      return (f"no configurable named {selector!r}{_did_you_mean(selector, names)}; check the "
              "spelling, or add the gin file or `import` that registers it")
    names = _parameters(configurable.wrapped)
    if names is not None and param not in names:
      return (f"{configurable.name} has no parameter {param!r}"
              f"{_did_you_mean(param, names)}; check the spelling")
  return f"{_one_line(err).rstrip('.')}; check the value and the spelling"


def _parameters(fn_or_cls) -> Optional[list]:
  """The parameter names a configurable takes, or None when it accepts any (**kwargs)."""
  try:
    params = inspect.signature(fn_or_cls).parameters.values()
  except (TypeError, ValueError):
    return None
  if any(p.kind is p.VAR_KEYWORD for p in params):
    return None
  return [p.name for p in params]


def used_macros() -> set:
  """Names of the macros some binding of the parsed config references (`%NAME`)."""
  return {"/".join(ref.scopes) for ref in gin.config.iterate_references(gin.config._CONFIG)  # pylint: disable=protected-access
          if ref.selector == "gin.macro"}


def _check_macros_used(bindings: Sequence[str], queried: Sequence[str]) -> None:
  used = used_macros() | set(queried)
  for binding in bindings:
    name = binding.partition("=")[0].strip()
    if "." in name or "/" in name or name in used:
      continue
    raise UsageError(f"--gin.{binding}: no binding of the gin config uses the macro {name}"
                     f"{_did_you_mean(name, used)}, so it would have no effect; check the "
                     "spelling, or add the --gin_file that uses it")


class _DropPathNotFound(logging.Filter):
  def filter(self, record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Path not found")


@dataclasses.dataclass(frozen=True)
class Binding:
  """One binding of a config.gin text, its `%MACRO` value resolved."""
  text: str  # the value as written (of the macro, for `%MACRO`)
  value: Any  # the value parsed as a Python literal, else `text` without line breaks
  macro: Optional[str]  # the macro the value came from, if any


def resolved_bindings(config_text: str) -> dict[str, Binding]:
  """`{configurable.parameter: Binding}` of a config text as gin.config_str() writes it (values
  that span several lines included); macros are not listed on their own but resolved where used."""
  raw, current = {}, None
  for line in config_text.splitlines():
    match = re.match(r"^([A-Za-z_][\w./]*)\s*=\s*(.*)$", line)
    if match and not line.startswith("import "):
      current = match[1]
      raw[current] = match[2].strip()
    elif current and line.strip() and not line.startswith("#"):
      raw[current] += " " + line.strip()
    else:
      current = None
  out = {}
  for name, text in raw.items():
    if "." not in name:
      continue
    macro = None
    for _ in range(len(raw)):  # a macro may be bound to another macro
      if not (text.startswith("%") and text[1:] in raw):
        break
      macro = text[1:]
      text = raw[macro]
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = " ".join(text.split())
    out[name] = Binding(text, value, macro)
  return out


def default_binding(name: str) -> Optional[Binding]:
  """The default value of `configurable.parameter` (what it takes when nothing binds it), as a
  Binding; None when the configurable is not registered or the parameter has no default."""
  selector, _, param = name.rpartition(".")
  configurable = gin.config._REGISTRY.get_match(selector.rpartition("/")[2])  # pylint: disable=protected-access
  if configurable is None:
    return None
  try:
    parameter = inspect.signature(configurable.wrapped).parameters.get(param)
  except (TypeError, ValueError):
    return None
  if parameter is None or parameter.default in (inspect.Parameter.empty, gin.REQUIRED):
    return None
  return Binding(repr(parameter.default), parameter.default, None)


def write_config(model_dir: str, name: str = "config.gin") -> str:
  """Writes the parsed gin config to MODEL_DIR/name atomically, with the user's umask."""
  return fileio.atomic_write_text(os.path.join(model_dir, name), gin.config_str())
