"""Starting a sweep's runs with the schedulers people already have.

  local  runs them here, one after another or `--parallel N` at a time, each on its own devices
         (CUDA_VISIBLE_DEVICES); finished runs are skipped and interrupted ones resume (the
         trainer continues from the newest checkpoint in MODEL_DIR); one line per run;
  slurm  writes ROOT/sweep.sbatch, one array task per run, which the user submits with sbatch;
  print  prints one shell command per line, for `xargs -P`, GNU parallel or any other queue.
Each writes the manifest ROOT/sweep.json first; `--dry_run` lists the runs and writes nothing.
"""
from __future__ import annotations

import argparse
import collections
import os
import shlex
import shutil
import subprocess
import sys
import time
from typing import Optional, Sequence

from prompt_tuning.sweeps import plan as plan_lib
from prompt_tuning.sweeps import status
from prompt_tuning.sweeps.spec import SweepError

SCRIPT = "sweep.sbatch"
LOGS = "logs"
_SLURM_FLAGS = ("nodes", "gpus_per_node", "cpus_per_task", "mem", "time", "partition",
                "max_running", "sbatch", "setup")


def add_flags(parser: argparse.ArgumentParser) -> None:
  local = parser.add_argument_group("--launcher=local")
  local.add_argument("--parallel", type=int, default=1, help="runs at a time (default 1)")
  local.add_argument("--devices", default=None, metavar="0,1,...",
                     help="GPU ids shared out among the parallel runs (default: CUDA_VISIBLE_DEVICES, "
                          "else every GPU nvidia-smi lists, else none: the runs share the CPU)")
  slurm = parser.add_argument_group("--launcher=slurm (resources of each array task)")
  slurm.add_argument("--nodes", type=int, default=None,
                     help="nodes per run; more than 1 needs --multiprocess_gpu")
  slurm.add_argument("--gpus_per_node", type=int, default=None)
  slurm.add_argument("--cpus_per_task", type=int, default=None)
  slurm.add_argument("--mem", default=None, help="e.g. 64G")
  slurm.add_argument("--time", default=None, help="e.g. 24:00:00")
  slurm.add_argument("--partition", default=None)
  slurm.add_argument("--max_running", type=int, default=None, help="array tasks running at once")
  slurm.add_argument("--sbatch", action="append", default=[], metavar="KEY=VALUE",
                     help="any other #SBATCH option, e.g. --sbatch account=proj; repeatable")
  slurm.add_argument("--setup", action="append", default=[], metavar="COMMAND",
                     help="a shell line run before the command, e.g. 'source venv/bin/activate'")


def _check_flags(args: argparse.Namespace) -> None:
  given = [f for f in _SLURM_FLAGS if getattr(args, f) not in (None, [])]
  if given and args.launcher != "slurm":
    raise SweepError(f"--{given[0]} is a --launcher=slurm flag; add --launcher=slurm or drop it")
  if (args.parallel != 1 or args.devices) and args.launcher != "local":
    raise SweepError("--parallel and --devices are --launcher=local flags")
  multihost = args.multiprocess_gpu or args.coordinator_address
  if multihost and args.launcher == "local":
    raise SweepError("multi-host runs (--multiprocess_gpu) need a scheduler: use --launcher=slurm "
                     "or --launcher=print")
  if (args.nodes or 1) > 1 and not args.multiprocess_gpu:
    raise SweepError(f"--nodes {args.nodes} runs each run on several nodes: add --multiprocess_gpu "
                     "so that their processes join one job")


def run(plan: plan_lib.Plan, args: argparse.Namespace) -> int:
  """What the entry point does with a checked plan."""
  _check_flags(args)
  entries = {e["name"]: e for e in plan.manifest["runs"]}
  if args.dry_run:
    print(f"{len(plan.runs)} runs in {plan.root} (dry run: nothing written or started)")
    for i, r in enumerate(plan.runs):
      print(f"{i:4d}  {r.name}  [{status.of(entries[r.name]).describe()}]")
    return 0
  manifest = plan_lib.write_manifest(plan)
  if args.launcher == "print":
    for r in plan.runs:
      print(plan_lib.shell(plan.commands[r.name]))
    print(f"{len(plan.runs)} commands; manifest {manifest}", file=sys.stderr)
    return 0
  if args.launcher == "slurm":
    path = write_script(plan, args)
    print(f"wrote {path}: {len(plan.runs)} array tasks; submit it with: sbatch {path}")
    return 0
  return local(plan, [entries[r.name] for r in plan.runs], _slots(args.parallel, args.devices))


# ----------------------------------------------------------------------------- local


def _visible_devices(flag: Optional[str]) -> list:
  if flag:
    return [d for d in flag.split(",") if d]
  if os.environ.get("CUDA_VISIBLE_DEVICES"):
    return [d for d in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if d]
  if shutil.which("nvidia-smi"):
    listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False).stdout
    return [str(i) for i, line in enumerate(listed.splitlines()) if line.startswith("GPU ")]
  return []


def _slots(parallel: int, devices_flag: Optional[str]) -> list:
  """One environment per parallel slot: its share of the GPUs (nothing on a CPU-only machine)."""
  if parallel < 1:
    raise SweepError(f"--parallel must be at least 1, not {parallel}")
  devices = _visible_devices(devices_flag)
  if not devices:
    return [{} for _ in range(parallel)]
  if len(devices) < parallel:
    raise SweepError(f"--parallel {parallel} needs a device per run, and only {len(devices)} are "
                     f"visible ({','.join(devices)}): lower --parallel or give --devices")
  k = len(devices) // parallel
  return [{"CUDA_VISIBLE_DEVICES": ",".join(devices[i * k:(i + 1) * k])} for i in range(parallel)]


def _duration(seconds: float) -> str:
  minutes, seconds = divmod(round(seconds), 60)
  return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def _last_line(path: str) -> str:
  with open(path, encoding="utf-8", errors="replace") as f:
    lines = [l.strip() for l in f.read().splitlines()[-50:] if l.strip()]
  errors = [l for l in lines if ": error: " in l]
  return (errors or lines or ["(no output)"])[-1]


def local(plan: plan_lib.Plan, entries: Sequence[dict], slots: list) -> int:
  """Runs the runs here, len(slots) at a time; returns 1 if any failed, else 0."""
  logs = os.path.join(plan.root, LOGS)
  os.makedirs(logs, exist_ok=True)
  waiting = collections.deque(enumerate(entries, 1))
  running, free, failed = {}, list(range(len(slots))), 0
  say = lambda i, e, text: print(f"[{i}/{len(entries)}] {e['name']}: {text}", flush=True)
  try:
    while waiting or running:
      while waiting and free:
        i, entry = waiting.popleft()
        before = status.of(entry)
        if before.state == "finished":
          say(i, entry, f"already {before.describe()}; skipped")
          continue
        log = os.path.join(logs, entry["name"] + ".log")
        slot = free.pop(0)
        with open(log, "a", encoding="utf-8") as f:
          proc = subprocess.Popen(plan.commands[entry["name"]], stdout=f, stderr=subprocess.STDOUT,
                                  env={**os.environ, **slots[slot]}, stdin=subprocess.DEVNULL)
        running[proc] = (i, entry, slot, time.time(), before, log)
      for proc in [p for p in running if p.poll() is not None]:
        i, entry, slot, start, before, log = running.pop(proc)
        free.append(slot)
        took = _duration(time.time() - start)
        resumed = f"resumed from step {before.step}, " if before.step is not None else ""
        if proc.returncode == 0:
          say(i, entry, f"{resumed}{status.of(entry).describe()} in {took}")
        else:
          failed += 1
          say(i, entry, f"FAILED (exit {proc.returncode}) after {took}: {_last_line(log)} [log {log}]")
      time.sleep(0.2 if running else 0)
  except KeyboardInterrupt:
    for proc in running:
      proc.terminate()
    for proc in running:
      proc.wait()
    print(f"interrupted: {len(running)} runs stopped; the same command resumes them")
    return 130
  if failed:
    print(f"{failed} of {len(entries)} runs failed; their logs are in {logs}")
  return 1 if failed else 0


# ----------------------------------------------------------------------------- slurm


def script(plan: plan_lib.Plan, args: argparse.Namespace) -> str:
  """The sbatch array script: task i runs the i-th command of `print`, under srun."""
  options = {"job-name": os.path.basename(plan.root) or "sweep",
             "array": f"0-{len(plan.runs) - 1}" + (f"%{args.max_running}" if args.max_running else ""),
             "nodes": args.nodes or 1, "ntasks-per-node": 1,
             "output": os.path.join(plan.root, LOGS, "slurm-%A_%a.log")}
  for flag in ("gpus_per_node", "cpus_per_task", "mem", "time", "partition"):
    if getattr(args, flag) is not None:
      options[flag.replace("_", "-")] = getattr(args, flag)
  for text in args.sbatch:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
      raise SweepError(f"--sbatch {text!r}: expected --sbatch KEY=VALUE (an #SBATCH option)")
    options[key.strip()] = value.strip()
  lines = ["#!/bin/bash", f"# {len(plan.runs)} runs of the sweep in {plan.root}, one array task each.",
           f"# Submit with: sbatch {os.path.join(plan.root, SCRIPT)}"]
  lines += [f"#SBATCH --{k}={v}" for k, v in options.items()]
  lines += ["set -euo pipefail", f"cd {shlex.quote(plan.manifest['cwd'])}", *args.setup, "commands=("]
  lines += [f"  {shlex.quote(plan_lib.shell(plan.commands[r.name]))}" for r in plan.runs]
  lines += [")", 'srun bash -c "${commands[$SLURM_ARRAY_TASK_ID]}"']
  return "\n".join(lines) + "\n"


def write_script(plan: plan_lib.Plan, args: argparse.Namespace) -> str:
  os.makedirs(os.path.join(plan.root, LOGS), exist_ok=True)
  return plan_lib.write_file(plan.root, SCRIPT, script(plan, args), executable=True)
