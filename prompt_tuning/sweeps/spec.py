"""Sweep files and the flags that stack on them (`--sweep`, `--var`, `--gin.NAME=VALUE`).

A sweep file is one JSON object; every key is optional:

  {"description": "Figure 3(a): prompt length at every size",
   "entry": "train",                      # the entry point each run calls: "train" or "eval"
   "gin_files": ["{size}", "prompts/from_class_labels.gin", "runs/prompt_finetune.gin"],
   "bindings": {"CLASS_LABELS": "${LABELS}", "TRAIN_STEPS": 30000},
   "vars": {"CHECKPOINTS": "gs://t5-data/pretrained_models/t5x"},
   "axes": {"objective": {"lm_adaptation": {"gin_files": [], "bindings": {}, "vars": {}}}},
   "sweep": {"size": ["small", "base"], "PROMPT_LENGTH": [1, 5, 20, 100, 150], "SEED": [0, 1, 2]},
   "select": "eval/score"}

An axis of "sweep" is one of three kinds:
  * a *linked* axis, defined under "axes" (in this file or in `configs/sweeps/axes.json`, which
    every sweep starts from): its values are names, each adding gin files, bindings and vars
    that move together (a size's gin file and its checkpoint);
  * a *variable* declared under "vars": each value sets `${NAME}` for the run;
  * otherwise a gin *macro*, which the run's gin files must bind (`plan` checks it): each value
    is bound to it.
"sweep" is one grid (axis -> values) or a list of grids; the runs are the union of every grid's
Cartesian product, the last axis varying fastest (several grids let a reference run, such as
model tuning, skip axes it has no use for).

Strings may hold `${NAME}`: a var, or an axis's value in the run (`${size}`, `${SEED}`); a var
whose value is null must be given with `--var NAME=VALUE`. A `{axis}` entry of "gin_files" is
replaced by the files that axis's value adds (by nothing in a grid without the axis); since
later gin files override earlier ones, an axis that adds files must say where with such an
entry, unless the sweep has no other gin files. Bindings are applied in this order: the file's,
the linked values' (which may replace the file's), `--gin.NAME=VALUE` flags (which may not bind a
swept macro), then the run's output folder. JSON values become gin text: a string is gin text as
on the command line (`/tmp/x`, `'text'`, `@fn()`), anything else its Python literal.

Several files stack like gin files: a later one replaces description, entry, select, gin_files
(when it gives them), each axis it defines and the grids; its bindings and vars update the
earlier ones.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Optional, Sequence

ENTRIES = {"train": "MODEL_DIR", "eval": "EVAL_OUTPUT_DIR"}  # entry point -> its output macro
AXES_FILE = "axes.json"
_KEYS = ("description", "entry", "gin_files", "bindings", "vars", "axes", "sweep", "select")
_VALUE_KEYS = ("gin_files", "bindings", "vars")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PLACEHOLDER = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")


class SweepError(Exception):
  """A problem in a sweep file or flag: reported as one line, before anything is written."""


@dataclasses.dataclass
class Value:
  """What one named value of a linked axis adds to a run."""
  gin_files: list = dataclasses.field(default_factory=list)
  bindings: dict = dataclasses.field(default_factory=dict)  # macro -> gin text
  vars: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Sweep:
  """A whole sweep: shared settings, the axes it may use and the grids it multiplies out."""
  description: str = ""
  entry: str = "train"
  gin_files: list = dataclasses.field(default_factory=list)
  bindings: dict = dataclasses.field(default_factory=dict)  # macro -> gin text
  vars: dict = dataclasses.field(default_factory=dict)  # name -> text, or None until given
  axes: dict = dataclasses.field(default_factory=dict)  # linked axis -> {value name: Value}
  grids: list = dataclasses.field(default_factory=list)  # [{axis: [value, ...]}]
  select: str = "eval/score"
  sources: list = dataclasses.field(default_factory=list)

  def kind(self, axis: str) -> str:
    return "linked" if axis in self.axes else "var" if axis in self.vars else "macro"


# ----------------------------------------------------------------------------- files


def gin_text(value) -> str:
  """A JSON value as gin text: strings as written, anything else as its Python literal."""
  return value if isinstance(value, str) else repr(value)


def check(ok: bool, where: str, message: str) -> None:
  if not ok:
    raise SweepError(f"{where}: {message}")


def _strings(items, where: str) -> list:
  check(isinstance(items, list) and all(isinstance(i, str) for i in items), where,
        "expected a list of strings")
  return list(items)


def _mapping(items, where: str, values=gin_text) -> dict:
  check(isinstance(items, dict), where, "expected an object")
  for key in items:
    check(bool(_NAME.match(key)), where, f"{key!r} is not a NAME (letters, digits, _)")
  return {k: (None if v is None else values(v)) for k, v in items.items()}


def _value(definition, where: str) -> Value:
  check(isinstance(definition, dict), where, "expected an object with gin_files, bindings, vars")
  unknown = sorted(set(definition) - set(_VALUE_KEYS))
  if unknown:
    raise SweepError(f"{where}: unknown key {unknown[0]!r} (an axis value has {', '.join(_VALUE_KEYS)})")
  return Value(_strings(definition.get("gin_files", []), f"{where}.gin_files"),
               _mapping(definition.get("bindings", {}), f"{where}.bindings"),
               _mapping(definition.get("vars", {}), f"{where}.vars", values=str))


def _grid(grid, where: str) -> dict:
  check(isinstance(grid, dict) and grid, where, "a grid is a non-empty object of axis: [values]")
  out = {}
  for axis, values in grid.items():
    check(bool(_NAME.match(axis)), where, f"{axis!r} is not an axis NAME")
    check(isinstance(values, list), f"{where}.{axis}", "expected a list of values")
    check(bool(values), f"{where}.{axis}", "the axis is empty: give at least one value")
    out[axis] = _unique([gin_text(v) for v in values], f"{where}.{axis}")
  return out


def _unique(values: list, where: str) -> list:
  seen = [v for i, v in enumerate(values) if v in values[:i]]
  if seen:
    raise SweepError(f"{where}: value {seen[0]!r} is given twice")
  return values


def read(path: str) -> dict:
  """A sweep file, checked key by key; values as gin text."""
  try:
    with open(path, encoding="utf-8") as f:
      raw = json.load(f)
  except (OSError, ValueError) as err:
    raise SweepError(f"cannot read sweep file {path}: {' '.join(str(err).split())}") from None
  check(isinstance(raw, dict), path, "a sweep file holds one JSON object")
  unknown = sorted(set(raw) - set(_KEYS))
  if unknown:
    raise SweepError(f"{path}: unknown key {unknown[0]!r} (a sweep file has {', '.join(_KEYS)})")
  out = {}
  for key in ("description", "entry", "select"):
    if key in raw:
      check(isinstance(raw[key], str), f"{path}.{key}", "expected a string")
      out[key] = raw[key]
  check(out.get("entry", "train") in ENTRIES, f"{path}.entry", f"one of {', '.join(ENTRIES)}")
  if "gin_files" in raw:
    out["gin_files"] = _strings(raw["gin_files"], f"{path}.gin_files")
  out["bindings"] = _mapping(raw.get("bindings", {}), f"{path}.bindings")
  out["vars"] = _mapping(raw.get("vars", {}), f"{path}.vars", values=str)
  axes = raw.get("axes", {})
  check(isinstance(axes, dict), f"{path}.axes", "expected an object of axis: {value: definition}")
  out["axes"] = {}
  for axis, values in axes.items():
    check(bool(_NAME.match(axis)) and isinstance(values, dict) and values, f"{path}.axes.{axis}",
          "an axis NAME with an object of value: definition")
    out["axes"][axis] = {v: _value(d, f"{path}.axes.{axis}.{v}") for v, d in values.items()}
  if "sweep" in raw:
    grids = raw["sweep"] if isinstance(raw["sweep"], list) else [raw["sweep"]]
    out["grids"] = [_grid(g, f"{path}.sweep") for g in grids]
  return out


def merge(sweep: Sweep, part: dict, source: str) -> Sweep:
  """`sweep` with a file read by `read` stacked on top of it."""
  for key in ("description", "entry", "select", "gin_files", "grids"):
    if key in part:
      setattr(sweep, key, part[key])
  sweep.bindings.update(part.get("bindings", {}))
  sweep.vars.update(part.get("vars", {}))
  sweep.axes.update(part.get("axes", {}))
  sweep.sources.append(source)
  return sweep


def find_file(name: str, configs_dir: Optional[str]) -> str:
  """A sweep file given as a path, or by name from configs/sweeps/ (`figure1`, `figure1.json`)."""
  candidates = [name]
  if configs_dir:
    folder = os.path.join(configs_dir, "sweeps")
    candidates += [os.path.join(folder, name), os.path.join(folder, name + ".json")]
  for path in candidates:
    if os.path.isfile(path):
      return path
  shipped = sorted(f[:-5] for f in os.listdir(os.path.join(configs_dir, "sweeps"))
                   if f.endswith(".json") and f != AXES_FILE) if configs_dir else []
  raise SweepError(f"sweep file {name!r} not found: give a path or one of {', '.join(shipped) or 'none'}")


def load(files: Sequence[str], configs_dir: Optional[str]) -> Sweep:
  """The standard axes (configs/sweeps/axes.json) with `files` stacked on them in order."""
  sweep = Sweep()
  standard = os.path.join(configs_dir, "sweeps", AXES_FILE) if configs_dir else None
  for path in ([standard] if standard and os.path.isfile(standard) else []) + [
      find_file(f, configs_dir) for f in files]:
    merge(sweep, read(path), path)
  return sweep


# ----------------------------------------------------------------------------- flags


def split_values(text: str) -> list:
  """`1,5,20` -> ['1', '5', '20']; commas inside brackets or quotes do not split, so
  `CLASS_LABELS=['a', 'b'],['c', 'd']` gives two values."""
  values, current, depth, quote = [], "", 0, None
  for ch in text:
    if quote:
      quote = None if ch == quote else quote
    elif ch in "'\"":
      quote = ch
    elif ch in "([{":
      depth += 1
    elif ch in ")]}":
      depth -= 1
    elif ch == "," and depth == 0:
      values.append(current.strip())
      current = ""
      continue
    current += ch
  return values + [current.strip()]


def assignment(text: str, flag: str, pattern=_NAME) -> tuple[str, str]:
  """`NAME=VALUE` of a flag, refused in one line when it is not one."""
  name, sep, value = text.partition("=")
  if not sep or not pattern.match(name.strip()):
    raise SweepError(f"{flag} {text!r}: expected {flag} NAME=VALUE")
  return name.strip(), value.strip()


def set_axis(sweep: Sweep, axis: str, values: list) -> None:
  """`--sweep AXIS=v1,v2`. An axis no grid has is added to every grid. Otherwise the values
  replace the axis's values in each grid that has it, except for a linked axis in several grids
  (Figure 1's method): there each grid keeps the given values it has, and a grid left with none
  is dropped."""
  where = f"--sweep {axis}"
  check(bool(_NAME.match(axis)), where, "expected --sweep NAME=v1,v2")
  check(bool(values) and all(values), where,
        "the axis is empty or has an empty value: give --sweep NAME=v1,v2")
  _unique(values, where)
  if sweep.kind(axis) == "linked":
    unknown = [v for v in values if v not in sweep.axes[axis]]
    if unknown:
      raise SweepError(f"{where}: no value {unknown[0]!r} (the axis has {', '.join(sweep.axes[axis])})")
  having = [g for g in sweep.grids if axis in g]
  if not having:
    sweep.grids = [{**g, axis: list(values)} for g in (sweep.grids or [{}])]
    return
  if sweep.kind(axis) != "linked" or len(having) == 1:
    sweep.grids = [{**g, axis: list(values)} if axis in g else g for g in sweep.grids]
    return
  offered = [v for g in having for v in g[axis]]
  missing = [v for v in values if v not in offered]
  if missing:
    raise SweepError(f"{where}: this sweep's grids have {', '.join(dict.fromkeys(offered))}, not "
                     f"{missing[0]!r}; edit a copy of the sweep file to add it")
  kept = [{**g, axis: [v for v in values if v in g[axis]]} if axis in g else g for g in sweep.grids]
  sweep.grids = [g for g in kept if all(g.values())]


def apply_flags(sweep: Sweep, gin_files: Sequence[str], bindings: Sequence[str],
                variables: Sequence[str], axes: Sequence[str]) -> dict:
  """Stacks the command line on the sweep; returns the `--gin.NAME=VALUE` overrides."""
  sweep.gin_files = sweep.gin_files + list(gin_files)
  for text in variables:
    name, value = assignment(text, "--var")
    sweep.vars[name] = value
  for text in axes:
    name, values = assignment(text, "--sweep")
    set_axis(sweep, name, split_values(values) if values else [])
  return dict(assignment(b, "--gin.", re.compile(r"^[A-Za-z_][\w./]*$")) for b in bindings)
