"""From flags to a checked list of runs with their commands, and the sweep root's manifest.

Every run's gin config is parsed here, as its entry point will parse it, before anything is
written or launched: a macro that no gin file of the run binds (an axis or a `--gin.NAME` typo),
a bad value or a missing file is refused in one line naming the run. The manifest,
ROOT/sweep.json, lists each run's settings, gin files, bindings and command; a root that holds
a different sweep is refused unless `--resume` (which adds the new runs to it), and a run whose
name is there with other gin files or bindings is refused always, so no run is ever silently
replaced.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import shlex
import sys
from typing import Optional, Sequence

import gin

from prompt_tuning.config import checks
from prompt_tuning.config import cli
from prompt_tuning.config import fileio
from prompt_tuning.config import gin_config
from prompt_tuning.config.errors import UsageError
from prompt_tuning.sweeps import expand, spec
from prompt_tuning.sweeps.spec import SweepError

MANIFEST = "sweep.json"
FORMAT = "prompt_tuning.sweep/1"
LAUNCHERS = ("local", "slurm", "print")


@dataclasses.dataclass
class Plan:
  """A checked sweep: its runs (in order), their commands, and what the manifest will hold."""
  sweep: spec.Sweep
  root: str
  runs: list  # expand.Run
  commands: dict  # run name -> argv
  facts: dict  # run name -> {"train_steps", "early_stopping_patience"} from its gin config
  manifest: dict


def flag_parser(prog: str, description: str) -> argparse.ArgumentParser:
  """The entry points' flags (--gin_file, --gin_search_paths, --tfds_data_dir, multi-host) and
  the sweep's own."""
  parser = cli.flag_parser(prog, description)
  sweep = parser.add_argument_group("sweep")
  sweep.add_argument("--root", help="sweep root: one folder per run and the manifest sweep.json")
  sweep.add_argument("--sweep_file", action="append", default=[], metavar="FILE",
                     help="a sweep file (JSON), or the name of one in configs/sweeps/ (figure1, "
                          "figure3a, ..., demo_quickstart); repeatable, later files stack on earlier")
  sweep.add_argument("--sweep", action="append", default=[], dest="axes", metavar="NAME=V1,V2",
                     help="an axis and its values; repeatable, the runs are the product of the axes")
  sweep.add_argument("--var", action="append", default=[], metavar="NAME=VALUE",
                     help="a ${NAME} of the sweep, e.g. --var CHECKPOINTS=/data/t5x")
  sweep.add_argument("--launcher", choices=LAUNCHERS, default="local",
                     help="local: run here; slurm: write an sbatch array script; print: one command a line")
  sweep.add_argument("--dry_run", action="store_true", help="list the runs; write and start nothing")
  sweep.add_argument("--resume", action="store_true",
                     help="add this sweep's runs to a root that holds another sweep")
  return parser


def parse_flags(parser: argparse.ArgumentParser, argv: Sequence[str]) -> tuple:
  """(args, `--gin.NAME=VALUE` texts), as the entry points read them."""
  args, rest = parser.parse_known_args(argv)
  unknown = [a for a in rest if not a.startswith("--gin.")]
  if unknown:
    parser.error(f"unrecognized argument {unknown[0]!r}")
  args.gin_search_paths = [p for group in args.gin_search_paths for p in group.split(",") if p]
  return args, [a[len("--gin."):] for a in rest]


# ----------------------------------------------------------------------------- gin


def _parse(run, files: Sequence[str], bindings: Sequence[str], search_paths: Sequence[str]) -> None:
  try:
    gin_config.parse(files, bindings, search_paths)
  except UsageError as err:
    raise SweepError(f"run {run.name}: {str(err).splitlines()[0]}") from None


def _macros() -> set:
  return {name for name, kind in gin.config._CONFIG if kind == "gin.macro"}


def _macro(name: str):
  try:
    return gin.query_parameter(f"%{name}")
  except ValueError:
    return None


def _unknown(name: str, known: set, what: str, run) -> SweepError:
  close = difflib.get_close_matches(name, sorted(known), n=2)
  hint = f"; did you mean {' or '.join(close)}?" if close else ""
  return SweepError(f"unknown {what} {name}: no gin file of run {run.name} binds a macro of that "
                    f"name{hint}")


def check_gin(sweep: spec.Sweep, runs: Sequence[expand.Run], search_paths: Sequence[str]) -> dict:
  """Parses every run's gin config; returns what the launchers need from it, per run."""
  known, facts = {}, {}
  for run in runs:
    files = tuple(run.gin_files)
    if files not in known:
      _parse(run, files, [], search_paths)
      known[files] = _macros()
    for axis in run.settings:
      if sweep.kind(axis) == "macro" and axis not in known[files]:
        raise _unknown(axis, known[files] | set(sweep.axes) | set(sweep.vars), "sweep axis", run)
    for name in run.bindings:
      if "." not in name and "/" not in name and name not in known[files]:
        raise _unknown(name, known[files], "macro", run)
    _parse(run, files, [f"{k}={v}" for k, v in run.bindings.items()], search_paths)
    facts[run.name] = {"train_steps": _macro("TRAIN_STEPS"),
                       "early_stopping_patience": _macro("EARLY_STOPPING_PATIENCE")}
  return facts


# ----------------------------------------------------------------------------- commands


def command(sweep: spec.Sweep, run: expand.Run, args: argparse.Namespace) -> list:
  """The argv of one run: its entry point with the sweep's flags, gin files and bindings."""
  argv = [sys.executable, "-m", f"prompt_tuning.{sweep.entry}"]
  argv += [f"--gin_file={f}" for f in run.gin_files]
  argv += [f"--gin.{k}={v}" for k, v in run.bindings.items()]
  if args.gin_search_paths:
    argv.append(f"--gin_search_paths={','.join(args.gin_search_paths)}")
  if args.tfds_data_dir:
    argv.append(f"--tfds_data_dir={args.tfds_data_dir}")
  if args.multiprocess_gpu:
    argv.append("--multiprocess_gpu")
  for flag in ("coordinator_address", "process_count", "process_index"):
    if getattr(args, flag) is not None:
      argv.append(f"--{flag}={getattr(args, flag)}")
  return argv


def shell(argv: Sequence[str]) -> str:
  return shlex.join(argv)


# ----------------------------------------------------------------------------- manifest


def _entry(sweep: spec.Sweep, run: expand.Run, facts: dict, argv: list) -> dict:
  return {"name": run.name, "settings": run.settings, "dir": run.output_dir, "entry": sweep.entry,
          "gin_files": run.gin_files, "bindings": run.bindings, "select": run.select,
          **facts, "command": shell(argv)}


def _identity(entry: dict) -> tuple:
  return entry["entry"], tuple(entry["gin_files"]), json.dumps(entry["bindings"], sort_keys=True)


def read_manifest(root: str) -> Optional[dict]:
  """ROOT/sweep.json, or None where the root has none."""
  path = os.path.join(root, MANIFEST)
  if not os.path.isfile(path):
    return None
  try:
    with open(path, encoding="utf-8") as f:
      manifest = json.load(f)
  except (OSError, ValueError) as err:
    raise SweepError(f"cannot read {path}: {' '.join(str(err).split())}") from None
  if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
    raise SweepError(f"{path} is not a sweep manifest ({FORMAT})")
  return manifest


def _merged(root: str, entries: list, resume: bool) -> list:
  """The manifest's runs: this sweep's, after those of the sweep already in `root`."""
  old = read_manifest(root)
  if old is None:
    if os.path.isdir(root) and os.listdir(root):
      raise SweepError(f"--root {root} is not empty and holds no sweep ({MANIFEST}): give a new "
                       "or empty folder")
    return entries
  before = {e["name"]: e for e in old["runs"]}
  for entry in entries:
    if entry["name"] in before and _identity(before[entry["name"]]) != _identity(entry):
      raise SweepError(f"run {entry['name']} in {root} was made with other gin files or bindings; "
                       "it is never replaced: use a new --root")
  if set(before) != {e["name"] for e in entries} and not resume:
    new = sum(e["name"] not in before for e in entries)
    raise SweepError(f"--root {root} holds a different sweep ({len(before)} runs; this one has "
                     f"{new} new and leaves out {len(set(before) - {e['name'] for e in entries})}): "
                     "use a new --root, or --resume to add this sweep's runs to it")
  return old["runs"] + [e for e in entries if e["name"] not in before]


def make(args: argparse.Namespace, bindings: Sequence[str]) -> Plan:
  """The checked plan of the sweep the flags describe; writes nothing."""
  if not args.root:
    raise SweepError("no --root given: the sweep needs a folder for its runs, e.g. --root /tmp/sweep")
  root = os.path.abspath(checks.local_folder(args.root, "--root"))
  sweep = spec.load(args.sweep_file, gin_config.find_configs_dir())
  overrides = spec.apply_flags(sweep, args.gin_file, bindings, args.var, args.axes)
  runs = expand.expand(sweep, overrides, root)
  facts = check_gin(sweep, runs, args.gin_search_paths)
  commands = {run.name: command(sweep, run, args) for run in runs}
  entries = [_entry(sweep, r, facts[r.name], commands[r.name]) for r in runs]
  manifest = {"format": FORMAT, "description": sweep.description, "sources": sweep.sources,
              "cwd": os.getcwd(), "axes": _axes(sweep), "runs": _merged(root, entries, args.resume)}
  return Plan(sweep, root, runs, commands, facts, manifest)


def _axes(sweep: spec.Sweep) -> dict:
  """Per axis of the sweep, its kind and the macros it binds (summaries group by them)."""
  out = {}
  for grid in sweep.grids:
    for axis in grid:
      entry = out.setdefault(axis, {"kind": sweep.kind(axis), "binds": []})
      entry["binds"] = sorted(set(entry["binds"]) | expand.binds(sweep, grid, axis))
  return out


def write_file(folder: str, name: str, text: str, executable: bool = False) -> str:
  """folder/name, written atomically (temp file + rename) with the user's umask."""
  return fileio.atomic_write_text(os.path.join(folder, name), text, executable)


def write_manifest(plan: Plan) -> str:
  return write_file(plan.root, MANIFEST, json.dumps(plan.manifest, indent=1) + "\n")
