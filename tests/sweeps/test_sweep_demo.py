"""The demonstration (scripts/demo_quickstart.sh on configs/sweeps/demo_quickstart.json) at CI
size: the README's command with 2 runs of 4 steps; the plotted points are the runs' best
evaluations."""
import csv
import json
import os
import subprocess

from tests.runs.runs_testlib import REPO

TASK = "quickstart_review_sentiment"
CI_SIZE = ["--sweep=method=prompt", "--sweep=PROMPT_LENGTH=1,5", "--sweep=init=class_label", "--sweep=SEED=0",
           "--gin.TRAIN_STEPS=4", "--gin.EVAL_PERIOD=2", "--gin.CHECKPOINT_PERIOD=2", "--gin.LOG_PERIOD=1",
           "--gin.EVAL_MAX_EXAMPLES=16"]


def test_demo_at_ci_size_sweeps_summarizes_and_plots(tmp_path, one_cpu_device):
  root = tmp_path / "demo"
  result = subprocess.run(["bash", os.path.join(REPO, "scripts", "demo_quickstart.sh"), str(root), *CI_SIZE],
                          capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  names = ["method=prompt,PROMPT_LENGTH=1,init=class_label,SEED=0", "method=prompt,PROMPT_LENGTH=5,init=class_label,SEED=0"]
  out = result.stdout.splitlines()
  assert [l.split("] ", 1)[1].split(": ")[0] for l in out[:2]] == names
  best = {}
  for name in names:
    evals = [r for r in map(json.loads, open(root / name / "metrics.jsonl")) if "eval/score" in r]
    best[name] = max(evals, key=lambda r: r["eval/score"])  # the first of equal ones
    assert "PROMPT_INIT = @prompt_tuning.model.prompts.class_labels()" in open(root / name / "config.gin").read()
  assert out[2:5] == [str(root / "plots" / f"figure3.{ext}") for ext in ("png", "svg", "csv")]
  with open(root / "plots" / "figure3.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  assert [(r["line"], r["x"], r["n"], r["std"]) for r in rows] == [
      ("method=prompt,init=class_label", "1", "1", ""), ("method=prompt,init=class_label", "5", "1", "")]
  for row, name in zip(rows, names):
    assert float(row["mean"]) == round(best[name][f"eval/{TASK}/accuracy"], 2)
  summary = open(root / "summary.txt").read().splitlines()
  assert summary == out[8:] and f"best at step {best[names[0]]['step']})" in summary[1]
  assert os.path.getsize(root / "plots" / "curves.png") > 0
