"""scripts/summarize_runs.py: best evaluation per run, mean ± std over seeds, SuperGLUE score."""
import json
import os
import sys

import numpy as np
import pytest

from tests.runs.runs_testlib import REPO

sys.path.insert(0, os.path.join(REPO, "scripts"))
import summarize_runs  # noqa: E402

TASKS = ("boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc")
CONFIG = """# Macros:
INITIAL_CHECKPOINT_PATH = 'gs://t5-data/pretrained_models/t5x/t5_1_1_lm100k_base/checkpoint_1100000'
MIXTURE_OR_TASK_NAME = '{task}'
PROMPT_INIT = @prompt_tuning.prompts.class_labels()
PROMPT_LENGTH = {length}
SEED = {seed}
T5Config.emb_dim = 768
"""


def _run(root, task, seed, evals, length=100):
  """A MODEL_DIR with a config.gin and one eval line per (step, {metric: value})."""
  folder = root / f"{task}_p{length}_s{seed}"
  folder.mkdir()
  (folder / "config.gin").write_text(CONFIG.format(task=task, seed=seed, length=length))
  with open(folder / "metrics.jsonl", "w") as f:
    f.write(json.dumps({"step": 100, "train/loss": 3.0}) + "\n")
    for step, values in evals:
      row = {"step": step, f"eval/{task}/loss": 0.5, f"eval/{task}/token_accuracy": 99.0,
             **{f"eval/{task}/{k}": v for k, v in values.items()}, "eval/score": float(np.mean(list(values.values())))}
      f.write(json.dumps(row) + "\n")
  return str(folder)


def test_best_evaluation_grouped_over_seeds_with_the_super_glue_score(tmp_path, capsys):
  dirs, expected = [], {}
  for seed in (0, 1):
    per_task = []
    for i, short in enumerate(TASKS):
      task = f"taskless_super_glue_{short}_v102"
      best = {"accuracy": 60.0 + i + 10 * seed}
      if short == "cb":
        best = {"accuracy": 80.0 + seed, "f1": 70.0 + seed}
      # The best evaluation is the middle one, not the last.
      dirs.append(_run(tmp_path, task, seed, [(1000, {k: v - 5 for k, v in best.items()}), (2000, best),
                                              (3000, {k: v - 1 for k, v in best.items()})]))
      per_task.append(np.mean(list(best.values())))
    expected[seed] = np.mean(per_task)
  dirs.append(_run(tmp_path, "taskless_super_glue_rte_v102", 0, [(1000, {"accuracy": 50.0})], length=5))
  assert summarize_runs.main(dirs + ["--json"]) == 0
  summary = json.loads(capsys.readouterr().out)
  assert [(e["size"], e["prompt_length"], e["prompt_init"]) for e in summary] == [
      ("base", 100, "class_labels"), ("base", 5, "class_labels")]
  full, short_prompt = summary
  rte = full["metrics"]["taskless_super_glue_rte_v102/accuracy"]
  assert rte == {"mean": 70.0, "std": pytest.approx(np.std([65.0, 75.0], ddof=1), abs=0.01), "n": 2}
  assert full["metrics"]["taskless_super_glue_cb_v102/f1"]["mean"] == 70.5
  assert not any(k.endswith(("/loss", "/token_accuracy")) for k in full["metrics"])
  assert full["super_glue"]["mean"] == pytest.approx(np.mean(list(expected.values())), abs=0.01)
  assert full["super_glue"]["n"] == 2
  assert "super_glue" not in short_prompt  # one task only: no SuperGLUE score

  assert summarize_runs.main(dirs) == 0
  table = capsys.readouterr().out
  assert "size=base prompt_length=100 prompt_init=class_labels" in table
  assert "SuperGLUE score:" in table


def test_runs_without_evaluations_are_skipped_and_other_folders_refused(tmp_path, capsys):
  waiting = _run(tmp_path, "taskless_super_glue_rte_v102", 0, [])
  done = _run(tmp_path, "taskless_super_glue_cb_v102", 0, [(10, {"accuracy": 50.0})])
  assert summarize_runs.main([waiting, done, "--json"]) == 0
  captured = capsys.readouterr()
  assert len(json.loads(captured.out)) == 1 and "skipping" in captured.err
  assert summarize_runs.main([str(tmp_path / "nothing")]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "not a training run's MODEL_DIR" in err[0]
