"""Summarizes training runs as the paper reports them: mean ± std over seeds, per setting.

Each MODEL_DIR's best evaluation (the early-stopping choice: highest eval/score) is read from its
metrics.jsonl, and its setting from its config.gin: model size, prompt length, prompt init and
frozen checkpoint. Runs that differ only in SEED (and task) are grouped; for each group it prints
every task metric's mean ± standard deviation over seeds and, where every seed has all 8
SuperGLUE tasks, the SuperGLUE score (Figure 1's y axis):

  python scripts/summarize_runs.py /runs/*/           # e.g. /runs/{rte,cb,...}_{base,xxl}_s{0,1,2}
  python scripts/summarize_runs.py /runs/*/ --json > summary.json
"""
import argparse
import ast
import collections
import json
import os
import re
import sys

import numpy as np

from prompt_tuning.data import metrics

SIZES = {512: "small", 768: "base", 1024: "large", 2048: "xl", 4096: "xxl"}  # T5 1.1 d_model
SETTING = ("size", "prompt_length", "prompt_init", "checkpoint")
NOT_TASK_METRICS = ("loss", "token_accuracy")  # teacher-forced numbers, not the task's metrics


def read_config(path: str) -> dict:
  """The run's macros and T5Config bindings from its config.gin, values parsed where literal."""
  values = {}
  for line in open(path, encoding="utf-8"):
    match = re.match(r"^([A-Za-z_][\w.]*)\s*=\s*(.+?)\s*$", line)
    if match:
      try:
        values[match[1]] = ast.literal_eval(match[2])
      except (ValueError, SyntaxError):
        values[match[1]] = match[2]
  return values


def best_evaluation(path: str) -> dict | None:
  """The eval line of metrics.jsonl with the highest eval/score (the earliest of equal ones)."""
  best = None
  for line in open(path, encoding="utf-8"):
    row = json.loads(line)
    if row.get("eval/score") is not None and (best is None or row["eval/score"] > best["eval/score"]):
      best = row
  return best


def read_run(model_dir: str) -> dict | None:
  """Setting, seed, step and task metrics of one run; None if it has no evaluation yet."""
  config_path, metrics_path = (os.path.join(model_dir, n) for n in ("config.gin", "metrics.jsonl"))
  if not os.path.isfile(config_path) or not os.path.isfile(metrics_path):
    raise ValueError(f"{model_dir} is not a training run's MODEL_DIR (no config.gin / metrics.jsonl)")
  config, best = read_config(config_path), best_evaluation(metrics_path)
  if best is None:
    return None
  tasks = collections.defaultdict(dict)
  for key, value in best.items():
    parts = key.split("/")
    if len(parts) == 3 and parts[0] == "eval" and parts[2] not in NOT_TASK_METRICS and value is not None:
      tasks[parts[1]][parts[2]] = float(value)
  emb = config.get("T5Config.emb_dim")
  return {"dir": model_dir, "seed": config.get("SEED", 0), "step": best["step"], "tasks": dict(tasks),
          "size": SIZES.get(emb, f"d_model {emb}"), "prompt_length": config.get("PROMPT_LENGTH"),
          "prompt_init": str(config.get("PROMPT_INIT", "")).strip("@()").split(".")[-1],
          "checkpoint": str(config.get("INITIAL_CHECKPOINT_PATH"))}


def _stats(values) -> dict:
  values = np.asarray(values, np.float64)
  std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
  return {"mean": round(float(values.mean()), 2), "std": round(std, 2), "n": len(values)}


def summarize(runs: list) -> list:
  """One entry per setting: per task and metric mean ± std over seeds, and the SuperGLUE score."""
  groups = collections.defaultdict(list)
  for run in runs:
    groups[tuple(run[k] for k in SETTING)].append(run)
  out = []
  for key, members in sorted(groups.items(), key=lambda kv: [str(x) for x in kv[0]]):
    per_metric, per_seed = collections.defaultdict(list), collections.defaultdict(dict)
    for run in members:
      for task, values in run["tasks"].items():
        for metric, value in values.items():
          per_metric[(task, metric)].append(value)
        if "super_glue" in task:
          per_seed[run["seed"]][task] = values
    entry = dict(zip(SETTING, key))
    entry["metrics"] = {f"{t}/{m}": _stats(v) for (t, m), v in sorted(per_metric.items())}
    scores = []
    for tasks in per_seed.values():
      try:
        scores.append(metrics.super_glue_score(tasks))
      except ValueError:  # this seed lacks some of the 8 tasks
        pass
    if scores:
      entry["super_glue"] = _stats(scores)
    out.append(entry)
  return out


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                               epilog=__doc__.split("\n\n", 1)[1],
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("model_dirs", nargs="+", help="MODEL_DIRs of finished or running training runs")
  ap.add_argument("--json", action="store_true", help="print one JSON list instead of a table")
  args = ap.parse_args(argv)
  try:
    runs = [read_run(d) for d in args.model_dirs]
  except (ValueError, OSError) as err:
    print(f"summarize_runs: error: {' '.join(str(err).split())}", file=sys.stderr)
    return 2
  for d, run in zip(args.model_dirs, runs):
    if run is None:
      print(f"summarize_runs: skipping {d}: no evaluation yet", file=sys.stderr)
  summary = summarize([r for r in runs if r is not None])
  if args.json:
    print(json.dumps(summary, indent=1))
    return 0
  for entry in summary:
    print(" ".join(f"{k}={entry[k]}" for k in SETTING))
    for name, s in entry["metrics"].items():
      print(f"  {name}: {s['mean']:.2f} ± {s['std']:.2f} (n={s['n']})")
    if "super_glue" in entry:
      s = entry["super_glue"]
      print(f"  SuperGLUE score: {s['mean']:.2f} ± {s['std']:.2f} (n={s['n']} seeds)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
