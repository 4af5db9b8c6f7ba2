"""A sweep multiplied out into runs: conflicts checked, `${NAME}`s filled in, names given.

Each run's folder is `ROOT/<name>`, the name listing its settings in the grid's order
(`size=small,task=rte,SEED=0`), so a run keeps its folder when other values are added to the
sweep, and a sweep restarted with the same settings finds its runs again.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
import re
import string

from prompt_tuning.sweeps.spec import ENTRIES, PLACEHOLDER, Sweep, SweepError, check


@dataclasses.dataclass
class Run:
  """One point of a sweep: a command of `entry` with these gin files and bindings."""
  name: str
  settings: dict  # axis -> value, in the grid's order
  gin_files: list
  bindings: dict  # macro -> gin text, the output folder last
  output_dir: str
  select: str


def binds(sweep: Sweep, grid: dict, axis: str) -> set:
  """The macros an axis of a grid binds."""
  kind = sweep.kind(axis)
  if kind == "macro":
    return {axis}
  return {m for v in grid[axis] for m in sweep.axes[axis][v].bindings} if kind == "linked" else set()


def _check_grid(sweep: Sweep, grid: dict, overrides: dict) -> None:
  """Conflicts that make a grid ambiguous: two axes binding one macro or setting one var, a flag
  binding a swept macro, gin files with no place to go."""
  output = ENTRIES[sweep.entry]
  placed = {m[1] for m in map(PLACEHOLDER.match, sweep.gin_files) if m}
  for name in placed - set(sweep.axes):
    raise SweepError(f"gin file entry {{{name}}}: {name} is not a linked axis (those are "
                     f"{', '.join(sweep.axes)})")
  others = [f for f in sweep.gin_files if not PLACEHOLDER.match(f)]
  owners = {}
  for axis in grid:
    for macro in binds(sweep, grid, axis):
      check(macro not in owners, f"axes {owners.get(macro)} and {axis}",
            f"both bind {macro}; sweep it with one of them (or a linked axis moving both)")
      owners[macro] = axis
    if sweep.kind(axis) == "linked":
      adds_files = any(sweep.axes[axis][v].gin_files for v in grid[axis])
      check(not adds_files or axis in placed or not others, f"axis {axis}",
            f"its values add gin files, and their place among the others matters (later files "
             f"win): add an entry {{{axis}}} to the gin files (e.g. --gin_file={{{axis}}})")
  for macro in set(overrides) & set(owners):
    raise SweepError(f"--gin.{macro} binds a macro the sweep's axis {owners[macro]} sets: give "
                     f"the values with --sweep {owners[macro]}=... instead")
  check(output not in owners and output not in overrides and output not in sweep.bindings,
        output, "the sweep sets it to ROOT/<run name>: choose --root instead of binding it")
  setters = {}
  for axis in grid:
    for var in {k for v in grid[axis] for k in sweep.axes[axis][v].vars} if axis in sweep.axes else ():
      check(var not in setters and var not in grid, f"axes {setters.get(var, var)} and {axis}",
            f"both set ${{{var}}}; only one axis of a grid may set a var")
      setters[var] = axis


class _Vars(dict):
  """`${NAME}` lookups for one run: vars may refer to other vars, nulls must have been given."""

  def __init__(self, values: dict, where: str):
    super().__init__()
    self.values, self.where, self.stack = values, where, []

  def __missing__(self, name: str) -> str:
    if name not in self.values:
      raise SweepError(f"{self.where}: ${{{name}}} is not defined; set it with --var {name}=VALUE "
                       "or under the sweep's vars")
    if self.values[name] is None:
      raise SweepError(f"{self.where}: this sweep needs --var {name}=VALUE")
    check(name not in self.stack, self.where, f"${{{name}}} refers to itself")
    self.stack.append(name)
    self[name] = self.text(self.values[name])
    self.stack.pop()
    return self[name]

  def text(self, text: str) -> str:
    try:
      return string.Template(text).substitute(self)
    except ValueError:
      raise SweepError(f"{self.where}: bad '$' in {text!r}; write $$ for a dollar sign") from None


def run_name(settings: dict) -> str:
  """`size=small,SEED=0`: each setting as a file-name-safe label (hashed when changed or long)."""
  labels = []
  for axis, value in settings.items():
    text = value.strip("'\"")
    label = re.sub(r"[^A-Za-z0-9._+-]+", "_", text)[:40]
    if label != text:
      label += "-" + hashlib.sha1(value.encode()).hexdigest()[:6]
    labels.append(f"{axis}={label}")
  return ",".join(labels)


def _run(sweep: Sweep, settings: dict, overrides: dict, root: str) -> Run:
  name = run_name(settings)
  chosen = {a: sweep.axes[a][v] for a, v in settings.items() if sweep.kind(a) == "linked"}
  values = {**sweep.vars, **settings}
  for value in chosen.values():
    values.update(value.vars)
  env = _Vars(values, f"run {name}")
  files = []
  for entry in sweep.gin_files:
    axis = PLACEHOLDER.match(entry)
    files += chosen[axis[1]].gin_files if axis and axis[1] in chosen else [] if axis else [entry]
  placed = {m[1] for m in map(PLACEHOLDER.match, sweep.gin_files) if m}
  files += [f for a, v in chosen.items() if a not in placed for f in v.gin_files]
  bindings = dict(sweep.bindings)
  for value in chosen.values():
    bindings.update(value.bindings)
  bindings.update({a: v for a, v in settings.items() if sweep.kind(a) == "macro"})
  bindings.update(overrides)
  output = os.path.join(root, name)
  bindings = {k: env.text(v) for k, v in bindings.items()}
  bindings[ENTRIES[sweep.entry]] = output  # absolute, so gin reads it as a string
  return Run(name, dict(settings), [env.text(f) for f in files], bindings, output,
             env.text(sweep.select))


def expand(sweep: Sweep, overrides: dict, root: str) -> list:
  """Every run of the sweep, grid by grid, the last axis varying fastest."""
  check(bool(sweep.grids), "nothing to sweep", "give --sweep NAME=v1,v2 or a --sweep_file")
  runs = []
  for grid in sweep.grids:
    _check_grid(sweep, grid, overrides)
    for combo in itertools.product(*grid.values()):
      runs.append(_run(sweep, dict(zip(grid, combo)), overrides, root))
  seen = {}
  for run in runs:
    key = (tuple(run.gin_files), tuple(sorted((k, v) for k, v in run.bindings.items()
                                              if k != ENTRIES[sweep.entry])))
    other = seen.setdefault(key, run)
    if other is not run:
      same = [a for a in run.settings if run.settings[a] != other.settings.get(a)]
      raise SweepError(f"runs {other.name} and {run.name} are the same run: axis "
                       f"{', '.join(same) or '?'} changes none of its gin files or bindings "
                       "(is its ${...} used?)")
  return runs
