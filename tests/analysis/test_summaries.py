"""Summaries: best evaluation per run, mean ± std over seeds per setting, the SuperGLUE score,
sweep roots grouped by their axes, and scripts/summarize_runs.py as a thin wrapper."""
import json
import os
import sys

import numpy as np
import pytest

from prompt_tuning.analysis import summaries
from prompt_tuning.sweeps.spec import SweepError
from tests.runs.runs_testlib import REPO
from tests.sweeps.sweeps_testlib import write_json

sys.path.insert(0, os.path.join(REPO, "scripts"))
import summarize_runs  # noqa: E402

TASKS = ("boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc")
CONFIG = """# Macros:
INITIAL_CHECKPOINT_PATH = 'gs://t5-data/pretrained_models/t5x/t5_1_1_lm100k_base/checkpoint_1100000'
LEARNING_RATE = {lr}
MIXTURE_OR_TASK_NAME = '{task}'
PROMPT_INIT = @prompt_tuning.prompts.class_labels()
PROMPT_LENGTH = {length}
SEED = {seed}
VOCAB_SIZE = 32128
T5Config.emb_dim = 768
T5Config.mlp_dim = 2048
T5Config.num_decoder_layers = 12
T5Config.num_encoder_layers = 12
T5Config.num_heads = 12
T5Config.vocab_size = %VOCAB_SIZE
"""


def make_run(folder, task, seed, evals, length=100, lr=0.3):
  """A MODEL_DIR with a config.gin and one eval line per (step, {metric: value})."""
  os.makedirs(folder)
  with open(os.path.join(folder, "config.gin"), "w") as f:
    f.write(CONFIG.format(task=task, seed=seed, length=length, lr=lr))
  with open(os.path.join(folder, "metrics.jsonl"), "w") as f:
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
      dirs.append(make_run(tmp_path / f"{short}_s{seed}", task, seed, [
          (1000, {k: v - 5 for k, v in best.items()}), (2000 + seed, best),
          (3000, {k: v - 1 for k, v in best.items()})]))
      per_task.append(np.mean(list(best.values())))
    expected[seed] = np.mean(per_task)
  dirs.append(make_run(tmp_path / "rte_p5", "taskless_super_glue_rte_v102", 0, [(1000, {"accuracy": 50.0})], length=5))
  assert summarize_runs.main(dirs + ["--json"]) == 0
  summary = json.loads(capsys.readouterr().out)
  assert [e["settings"] for e in summary] == [
      {"size": "base", "method": "prompt", "prompt_length": length, "prompt_init": "class_labels",
       "checkpoint": "gs://t5-data/pretrained_models/t5x/t5_1_1_lm100k_base/checkpoint_1100000"}
      for length in (100, 5)]
  full, short_prompt = summary
  assert full["runs"] == 16 and full["params"] == 247577856  # T5 1.1 Base, the paper's count
  rte = full["metrics"]["taskless_super_glue_rte_v102/accuracy"]
  assert rte == {"mean": 70.0, "std": pytest.approx(np.std([65.0, 75.0], ddof=1), abs=0.01), "n": 2,
                 "best_steps": [2000, 2001]}
  assert full["metrics"]["taskless_super_glue_cb_v102/f1"]["mean"] == 70.5
  assert not any(k.endswith(("/loss", "/token_accuracy")) for k in full["metrics"])
  score = full["scores"]["super_glue"]
  assert score["mean"] == pytest.approx(np.mean(list(expected.values())), abs=0.01) and score["n"] == 2
  assert short_prompt["scores"] == {}  # one task only: no SuperGLUE score
  assert short_prompt["metrics"]["taskless_super_glue_rte_v102/accuracy"] == {
      "mean": 50.0, "std": None, "n": 1, "best_steps": [1000]}

  assert summarize_runs.main(dirs) == 0
  table = capsys.readouterr().out.splitlines()
  assert table[0].startswith("size=base method=prompt prompt_length=100 prompt_init=class_labels")
  assert f"  taskless_super_glue_rte_v102/accuracy: 70.00 ± {np.std([65.0, 75.0], ddof=1):.2f} " \
         "(n=2; best at steps 2000, 2001)" in table
  assert "  taskless_super_glue_rte_v102/accuracy: 50.00 (n=1; best at step 1000)" in table  # no ± 0.00
  assert any(l.startswith("  super_glue score: ") and "(n=2)" in l for l in table)


def test_runs_without_evaluations_are_skipped_and_other_folders_refused(tmp_path, capsys):
  waiting = make_run(tmp_path / "waiting", "taskless_super_glue_rte_v102", 0, [])
  done = make_run(tmp_path / "done", "taskless_super_glue_cb_v102", 0, [(10, {"accuracy": 50.0})])
  assert summarize_runs.main([waiting, done, "--json"]) == 0
  captured = capsys.readouterr()
  assert len(json.loads(captured.out)) == 1 and "skipping" in captured.err
  assert summarize_runs.main([str(tmp_path / "nothing")]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "not a training run's MODEL_DIR" in err[0]
  assert summarize_runs.main([waiting]) == 2
  assert "no run in" in capsys.readouterr().err


def _sweep(tmp_path, runs):
  """A sweep root: a manifest of runs {name: (settings, task, seed, evals)} and their folders."""
  entries = []
  for name, (settings, task, seed, evals) in runs.items():
    folder = make_run(tmp_path / name, task, seed, evals, length=settings.get("PROMPT_LENGTH", 100),
                      lr=settings.get("LEARNING_RATE", 0.3))
    entries.append({"name": name, "dir": folder, "settings": {k: str(v) for k, v in settings.items()},
                    "entry": "train", "select": "eval/score"})
  axes = {"PROMPT_LENGTH": ["PROMPT_LENGTH"], "LEARNING_RATE": ["LEARNING_RATE"], "SEED": ["SEED"],
          "task": ["MIXTURE_OR_TASK_NAME"]}
  write_json(tmp_path / "sweep.json", {"format": "prompt_tuning.sweep/1", "runs": entries,
                                       "axes": {k: {"kind": "x", "binds": v} for k, v in axes.items()}})
  return str(tmp_path)


def test_a_sweep_root_is_grouped_by_its_axes_or_by_any_setting(tmp_path):
  rte, cb = "taskless_super_glue_rte_v102", "taskless_super_glue_cb_v102"
  runs = {}
  for length in (1, 20):
    for lr in (0.3, 0.1):
      for seed in (0, 1):
        value = 50.0 + length + 100 * lr + seed
        runs[f"p{length}_lr{lr}_s{seed}_rte"] = ({"PROMPT_LENGTH": length, "LEARNING_RATE": lr, "task": "rte",
                                                   "SEED": seed}, rte, seed, [(10, {"accuracy": value})])
  runs["p1_lr0.3_s0_cb"] = ({"PROMPT_LENGTH": 1, "LEARNING_RATE": 0.3, "task": "cb", "SEED": 0}, cb, 0,
                            [(10, {"accuracy": 10.0}), (20, {"accuracy": 30.0})])
  root = _sweep(tmp_path, runs)
  summary = summaries.summarize(summaries.collect([root])[0])
  assert [e["settings"] for e in summary] == [{"PROMPT_LENGTH": str(p), "LEARNING_RATE": str(lr)}
                                              for p in (1, 20) for lr in (0.3, 0.1)]
  first = summary[0]["metrics"]
  assert first[f"{rte}/accuracy"]["mean"] == pytest.approx(50.0 + 1 + 30 + 0.5)
  assert first[f"{cb}/accuracy"] == {"mean": 30.0, "std": None, "n": 1, "best_steps": [20]}
  by_length = summaries.summarize(summaries.collect([root], by=["PROMPT_LENGTH"])[0])
  assert [e["settings"] for e in by_length] == [{"PROMPT_LENGTH": "1"}, {"PROMPT_LENGTH": "20"}]
  values = [50.0 + 20 + 100 * lr + s for lr in (0.3, 0.1) for s in (0, 1)]
  assert by_length[1]["metrics"][f"{rte}/accuracy"]["mean"] == pytest.approx(np.mean(values), abs=0.01)
  assert by_length[1]["metrics"][f"{rte}/accuracy"]["std"] == pytest.approx(np.std(values, ddof=1), abs=0.01)
  by_macro = summaries.summarize(summaries.collect([root], by=["size", "PROMPT_INIT"])[0])
  assert len(by_macro) == 1 and by_macro[0]["runs"] == 9
  with pytest.raises(SweepError, match="--by NOPE"):
    summaries.collect([root], by=["NOPE"])


def test_select_picks_the_best_evaluation_on_one_task(tmp_path):
  folder = make_run(tmp_path / "transfer", "taskless_glue_qqp_v100", 0, [(1, {"f1": 80.0}), (2, {"f1": 70.0})])
  with open(os.path.join(folder, "metrics.jsonl"), "a") as f:  # step 3: MRPC high, QQP low
    f.write(json.dumps({"step": 3, "eval/taskless_glue_qqp_v100/f1": 75.0, "eval/glue_mrpc_from_qqp_v100/f1": 99.0,
                        "eval/score": 87.0}) + "\n")
  (chosen,) = summaries.collect([folder], select="taskless_glue_qqp_v100")[0]
  assert chosen.step == 1
  assert summaries.collect([folder])[0][0].step == 3  # eval/score mixes in the transfer task


def test_ensemble_evaluations_of_a_sweep_get_a_super_glue_score_per_column(tmp_path):
  """Table 3: an evaluation run's columns (prompt_<i>, average, best, ensemble) are summarized
  apart, each with its SuperGLUE score."""
  entries, expected = [], {"ensemble": [], "average": []}
  for i, task in enumerate(TASKS):
    folder = tmp_path / f"task={task}"
    os.makedirs(folder)
    row = {"prompt_file": ["a.npy", "b.npy"], "ensemble/score": 1.0}
    for column, offset in (("ensemble", 2.0), ("average", 0.0)):
      row[f"{column}/taskless_super_glue_{task}_v102/accuracy"] = 80.0 + i + offset
      expected[column].append(80.0 + i + offset)
    (folder / "metrics.jsonl").write_text(json.dumps(row) + "\n")
    entries.append({"name": f"task={task}", "dir": str(folder), "settings": {"size": "xxl", "task": task},
                    "entry": "eval"})
  write_json(tmp_path / "sweep.json", {"format": "prompt_tuning.sweep/1", "runs": entries, "axes": {
      "size": {"kind": "linked", "binds": ["INITIAL_CHECKPOINT_PATH"]},
      "task": {"kind": "linked", "binds": ["MIXTURE_OR_TASK_NAME"]}}})
  (entry,) = summaries.summarize(summaries.collect([str(tmp_path)])[0])
  assert entry["settings"] == {"size": "xxl"} and entry["runs"] == 8
  assert entry["metrics"]["ensemble/taskless_super_glue_rte_v102/accuracy"]["mean"] == 87.0
  assert entry["scores"] == {f"{c}/super_glue": {"mean": round(float(np.mean(v)), 2), "std": None, "n": 1,
                                                 "best_steps": []} for c, v in expected.items()}
