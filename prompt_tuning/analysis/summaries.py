"""Runs summarized as the paper reports them: each run's best evaluation, then per setting every
task metric's mean ± std over seeds and, where each seed has all 8 SuperGLUE tasks, the
SuperGLUE score (one point of Figure 1).

Inputs are sweep roots (folders holding a sweep manifest, sweep.json) and single MODEL_DIRs. A
sweep's runs are grouped by every axis of the sweep except those binding SEED (averaged over) or
MIXTURE_OR_TASK_NAME (listed per task); other runs by what their config.gin says: size, method,
prompt length, prompt init and checkpoint. `by` groups by exactly the settings named: sweep axes,
those five, or any macro of config.gin.

A run's best evaluation is its eval line with the highest selection value (the earliest of equal
ones): eval/score, the early-stopping choice, unless the sweep's `select` or `--select` names a
metric (eval/squad_v110/f1) or a task (the mean of its metrics), as Tables 1 and 2 choose on the
training task's dev set. Evaluation runs of a sweep (prompt_tuning.eval, e.g. Table 3's
ensembles) count too: the columns of their one line (prompt_<i>, average, best, ensemble) become
tasks `<column>/<task>`, each column with its own SuperGLUE score.
"""
from __future__ import annotations

import argparse
import ast
import collections
import dataclasses
import json
import os
import re
import sys
from typing import Optional, Sequence

import numpy as np

from prompt_tuning.model import t5
from prompt_tuning.sweeps import plan as sweep_plan
from prompt_tuning.sweeps.spec import SweepError

SIZES = {512: "small", 768: "base", 1024: "large", 2048: "xl", 4096: "xxl"}  # T5 1.1 d_model
CONFIG_SETTINGS = ("size", "method", "prompt_length", "prompt_init", "checkpoint")
AVERAGED = ("SEED", "MIXTURE_OR_TASK_NAME")  # sweep axes binding these are not groups
NOT_TASK_METRICS = ("loss", "token_accuracy")  # teacher-forced numbers, not the task's metrics
SCORE = "eval/score"
SUPER_GLUE = "super_glue"


@dataclasses.dataclass
class Result:
  """One run at its best evaluation."""
  dir: str
  settings: dict  # what it is grouped by
  seed: int
  step: Optional[int]  # of the best evaluation (None for an evaluation run)
  tasks: dict  # task -> {metric: value}
  params: Optional[int]  # the T5 model's parameter count, from config.gin


# ----------------------------------------------------------------------------- one run


def read_config(path: str) -> dict:
  """The run's macros and bindings from its config.gin, literal values parsed, `%MACRO`s resolved."""
  values = {}
  with open(path, encoding="utf-8") as f:
    for line in f:
      match = re.match(r"^([A-Za-z_][\w.]*)\s*=\s*(.+?)\s*$", line)
      if match:
        try:
          values[match[1]] = ast.literal_eval(match[2])
        except (ValueError, SyntaxError):
          values[match[1]] = match[2]
  return {k: values.get(v[1:], v) if isinstance(v, str) and v.startswith("%") else v
          for k, v in values.items()}


def selection(row: dict, select: str) -> Optional[float]:
  if select in row:
    return row[select]
  values = [v for k, v in row.items() if k.startswith(f"eval/{select}/") and v is not None
            and k.rsplit("/", 1)[1] not in NOT_TASK_METRICS]
  return float(np.mean(values)) if values else None


def best_evaluation(rows: Sequence[dict], select: str = SCORE) -> Optional[dict]:
  """The row with the highest selection value (the earliest of equal ones), or None."""
  best, best_value = None, None
  for row in rows:
    value = selection(row, select)
    if value is not None and (best_value is None or value > best_value):
      best, best_value = row, value
  return best


def _tasks(row: dict) -> dict:
  """{task: {metric: value}} of an eval line; `eval/<task>/<metric>` for training runs, and
  `<column>/<task>/<metric>` (as task `<column>/<task>`) for evaluation runs."""
  tasks = collections.defaultdict(dict)
  for key, value in row.items():
    parts = key.split("/")
    if len(parts) == 3 and parts[2] not in NOT_TASK_METRICS and isinstance(value, (int, float)):
      tasks[parts[1] if parts[0] == "eval" else f"{parts[0]}/{parts[1]}"][parts[2]] = float(value)
  return dict(tasks)


def _params(config: dict) -> Optional[int]:
  fields = {f.name for f in dataclasses.fields(t5.T5Config)}
  values = {k.split(".", 1)[1]: v for k, v in config.items() if k.startswith("T5Config.")}
  values = {k: v for k, v in values.items() if k in fields and not (isinstance(v, str) and v[:1] in "%@")}
  try:
    return t5.param_count(t5.T5Config(**values)) if "emb_dim" in values else None
  except (TypeError, ValueError):
    return None


def config_settings(config: dict) -> dict:
  """The settings the paper varies, as config.gin gives them."""
  emb = config.get("T5Config.emb_dim")
  trainable = config.get("TRAINABLE", ["prompt/.*"])
  method = ("prompt" if list(trainable) == ["prompt/.*"] else "model" if list(trainable) == [".*"]
            else "partial " + ",".join(trainable))
  prompted = config.get("PROMPT_LENGTH") != 0  # model tuning has no prompt, so no initializer either
  return {"size": SIZES.get(emb, f"d_model {emb}"), "method": method,
          "prompt_length": config.get("PROMPT_LENGTH"),
          "prompt_init": str(config.get("PROMPT_INIT", "")).strip("@()").split(".")[-1] if prompted else None,
          "checkpoint": str(config.get("INITIAL_CHECKPOINT_PATH"))}


def read_run(folder: str, swept: Optional[dict] = None, select: str = SCORE,
             by: Optional[Sequence[str]] = None, evaluation: bool = False) -> Optional[Result]:
  """A run at its best evaluation, or None while it has none. `swept` holds its sweep settings."""
  config_path, metrics_path = (os.path.join(folder, n) for n in ("config.gin", "metrics.jsonl"))
  if not os.path.isfile(metrics_path) or not (evaluation or os.path.isfile(config_path)):
    if swept is not None:
      return None  # a run of the sweep that has not started
    raise SweepError(f"{folder} is not a training run's MODEL_DIR (no config.gin / metrics.jsonl) "
                     "nor a sweep root (no sweep.json)")
  with open(metrics_path, encoding="utf-8") as f:
    rows = [json.loads(line) for line in f if line.strip()]
  best = rows[-1] if evaluation and rows else best_evaluation(rows, select)
  if best is None:
    return None
  config = read_config(config_path) if os.path.isfile(config_path) else {}
  known = {**config, **config_settings(config), **(swept or {})}
  if by is None:
    settings = {k: v for k, v in swept.items()} if swept is not None else {
        k: known[k] for k in CONFIG_SETTINGS}
  else:
    missing = [k for k in by if k not in known]
    if missing:
      raise SweepError(f"--by {missing[0]}: {folder} has no such setting (it has "
                       f"{', '.join(list(swept or {}) + list(CONFIG_SETTINGS))} and its macros)")
    settings = {k: known[k] for k in by}
  return Result(folder, settings, int(config.get("SEED", 0)), None if evaluation else best.get("step"),
                _tasks(best), _params(config))


def _sweep_runs(root: str, manifest: dict, select: Optional[str], by) -> list:
  averaged = {a for a, info in manifest.get("axes", {}).items() if set(info["binds"]) & set(AVERAGED)}
  results = []
  for entry in manifest["runs"]:
    swept = {a: v for a, v in entry["settings"].items() if a not in averaged}
    results.append(read_run(entry["dir"], swept, select or entry.get("select", SCORE), by,
                            evaluation=entry.get("entry") == "eval"))
  return results


def collect(paths: Sequence[str], select: Optional[str] = None, by=None) -> tuple[list, list]:
  """(results, folders without an evaluation yet) of sweep roots and MODEL_DIRs."""
  results, waiting = [], []
  for path in paths:
    manifest = sweep_plan.read_manifest(path) if os.path.isdir(path) else None
    found = (_sweep_runs(path, manifest, select, by) if manifest is not None
             else [read_run(path, None, select or SCORE, by)])
    results += [r for r in found if r is not None]
    waiting += [path] * sum(r is None for r in found) if manifest is None else []
  if not results:
    raise SweepError(f"no run in {', '.join(paths)} has an evaluation yet: nothing to summarize "
                     "(runs are read once they have evaluated)")
  return results, waiting


# ----------------------------------------------------------------------------- groups


def stats(values: Sequence[float], steps: Sequence[Optional[int]] = ()) -> dict:
  """Mean, sample standard deviation (None for one run: there is no spread to show), n and the
  steps of the best evaluations."""
  values = np.asarray(values, np.float64)
  std = round(float(values.std(ddof=1)), 2) if len(values) > 1 else None
  return {"mean": round(float(values.mean()), 2), "std": std, "n": len(values),
          "best_steps": [s for s in steps if s is not None]}


def _scores(members: Sequence[Result]) -> dict:
  """The SuperGLUE score per seed (and per column of evaluation runs), then over seeds."""
  from prompt_tuning.data import metrics
  per_seed = collections.defaultdict(dict)
  for run in members:
    for task, values in run.tasks.items():
      column, _, name = task.rpartition("/")
      if SUPER_GLUE in name:
        per_seed[(column, run.seed)][name] = values
  scores = collections.defaultdict(list)
  for (column, _), tasks in sorted(per_seed.items()):
    try:
      score = metrics.super_glue_score(tasks)
    except ValueError:  # this seed lacks some of the 8 tasks
      continue
    scores[f"{column}/{SUPER_GLUE}" if column else SUPER_GLUE].append(score)
  return {name: stats(values) for name, values in scores.items()}


def summarize(results: Sequence[Result]) -> list:
  """One entry per setting, in the order the settings first appear: per task and metric the
  statistics over its runs, the SuperGLUE scores, and the model's parameter count."""
  groups = collections.defaultdict(list)
  for run in results:
    groups[json.dumps(run.settings, default=str)].append(run)
  out = []
  for members in groups.values():
    per_metric = collections.defaultdict(lambda: ([], []))
    for run in members:
      for task, values in run.tasks.items():
        for metric, value in values.items():
          per_metric[f"{task}/{metric}"][0].append(value)
          per_metric[f"{task}/{metric}"][1].append(run.step)
    params = {r.params for r in members}
    out.append({"settings": members[0].settings, "runs": len(members),
                "params": params.pop() if len(params) == 1 else None,
                "metrics": {k: stats(*v) for k, v in sorted(per_metric.items())},
                "scores": _scores(members)})
  return out


def _line(name: str, s: dict) -> str:
  spread = f" ± {s['std']:.2f}" if s["std"] is not None else ""
  steps = s["best_steps"]
  where = f"; best at step{'s' if len(steps) > 1 else ''} {', '.join(map(str, steps))}" if steps else ""
  return f"  {name}: {s['mean']:.2f}{spread} (n={s['n']}{where})"


def table(summary: Sequence[dict]) -> list:
  lines = []
  for entry in summary:
    lines.append(" ".join(f"{k}={v}" for k, v in entry["settings"].items()) or "(all runs)")
    lines += [_line(name, s) for name, s in entry["metrics"].items()]
    lines += [_line(f"{name} score", s) for name, s in entry["scores"].items()]
  return lines


def main(argv: Sequence[str], prog: str) -> int:
  """`summarize PATH... [--by A,B] [--select METRIC] [--json]`; errors raise SweepError."""
  parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
  parser.add_argument("paths", nargs="+", help="sweep roots and MODEL_DIRs")
  parser.add_argument("--by", default=None, help="group by exactly these comma-separated settings")
  parser.add_argument("--select", default=None,
                      help="metric (eval/<task>/<metric>) or task that picks each run's best evaluation")
  parser.add_argument("--json", action="store_true", help="print one JSON list instead of a table")
  args = parser.parse_args(argv)
  by = [b for b in args.by.split(",") if b] if args.by else None
  results, waiting = collect(args.paths, args.select, by)
  for path in waiting:
    print(f"{prog}: skipping {path}: no evaluation yet", file=sys.stderr)
  summary = summarize(results)
  print(json.dumps(summary, indent=1) if args.json else "\n".join(table(summary)))
  return 0
