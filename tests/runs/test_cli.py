"""The entry points end to end, by subprocess: train -> eval -> infer on the quickstart, tiny."""
import json
import os
import sys

import numpy as np
import pytest

from tests.runs import runs_testlib
from tests.runs.runs_testlib import TINY
from tests.runs.runs_testlib import run_cli

TASK = "quickstart_review_sentiment"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  model_dir = str(tmp_path_factory.mktemp("run") / "model")
  result = run_cli("train", *TINY, f"--gin.MODEL_DIR={model_dir}", "--gin.BATCH_SIZE=4",
                   "--gin.NUM_MICROBATCHES=2")
  assert result.returncode == 0, result.stderr[-3000:]
  return model_dir, result


def test_train_writes_metrics_config_checkpoints_and_prompt(trained):
  model_dir, result = trained
  lines = [json.loads(l) for l in open(os.path.join(model_dir, "metrics.jsonl"))]
  train_steps = [l["step"] for l in lines if "train/loss" in l]
  assert train_steps == [1, 2, 3, 4]
  evals = [l for l in lines if f"eval/{TASK}/accuracy" in l]
  assert [l["step"] for l in evals] == [2, 4] and all("eval/score" in l for l in evals)
  assert all(np.isfinite(l["train/loss"]) and l["train/examples_per_second"] > 0 for l in lines if "train/loss" in l)
  config = open(os.path.join(model_dir, "config.gin")).read()
  assert "TRAIN_STEPS = 4" in config and "PROMPT_LENGTH = 4" in config
  assert os.path.isdir(os.path.join(model_dir, "checkpoint_4"))
  assert os.listdir(os.path.join(model_dir, "tensorboard"))
  assert np.load(os.path.join(model_dir, "prompt_best.npy")).shape == (4, 64)
  assert "validation accuracy" in result.stdout and "majority-class baseline" in result.stdout


def test_eval_and_infer_on_the_trained_prompt(trained, tmp_path):
  model_dir, _ = trained
  common = ["--gin_file=runs/quickstart_eval.gin", "--gin.PROMPT_LENGTH=4", "--gin.EVAL_MAX_EXAMPLES=6",
            f"--gin.PROMPT_FILE={model_dir}/prompt_best.npy", f"--gin.EVAL_OUTPUT_DIR={tmp_path}/eval"]
  result = run_cli("eval", *common, cwd=str(tmp_path))  # configs/ found from another directory
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = json.loads(open(tmp_path / "eval" / "metrics.jsonl").read())
  assert 0 <= metrics[f"eval/{TASK}/accuracy"] <= 100
  predictions = [json.loads(l) for l in open(tmp_path / "eval" / f"{TASK}.validation.predictions.jsonl")]
  assert len(predictions) == 6 and {"inputs", "targets", "output"} <= set(predictions[0])

  result = run_cli("infer", "--gin_file=configs/runs/quickstart_infer.gin", "--gin.PROMPT_LENGTH=4",
                   "--gin.INFER_MAX_EXAMPLES=3", "--gin.INFER_MODE=score",
                   f"--gin.PROMPT_FILE={model_dir}/prompt_best.npy", f"--gin.INFER_OUTPUT_DIR={tmp_path}/infer")
  assert result.returncode == 0, result.stderr[-3000:]
  rows = [json.loads(l) for l in open(tmp_path / "infer" / f"{TASK}.validation.score.jsonl")]
  assert len(rows) == 3 and all(r["score"] < 0 and r["targets"] in ("positive", "negative") for r in rows)


def test_eval_of_several_prompt_files_is_an_ensemble(trained, tmp_path):
  model_dir, _ = trained
  files = [f"{model_dir}/prompts/prompt_{s}.npy" for s in (2, 4, 4)]  # prompt 1 and 2 outvote 0
  result = run_cli("eval", "--gin_file=runs/quickstart_eval.gin", "--gin.PROMPT_LENGTH=4",
                   "--gin.EVAL_MAX_EXAMPLES=8", f"--gin.PROMPT_FILE={files}",
                   f"--gin.EVAL_OUTPUT_DIR={tmp_path}/eval")
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = json.loads(open(tmp_path / "eval" / "metrics.jsonl").read())
  trained_evals = {l["step"]: l for l in map(json.loads, open(os.path.join(model_dir, "metrics.jsonl")))
                   if f"eval/{TASK}/accuracy" in l}
  # Each prompt of the table scores what the single prompt scored when training evaluated it.
  for i, step in enumerate((2, 4, 4)):
    assert metrics[f"prompt_{i}/{TASK}/accuracy"] == pytest.approx(trained_evals[step][f"eval/{TASK}/accuracy"])
  assert metrics[f"ensemble/{TASK}/accuracy"] == pytest.approx(metrics[f"prompt_1/{TASK}/accuracy"])
  rows = [json.loads(l) for l in open(tmp_path / "eval" / f"{TASK}.validation.predictions.jsonl")]
  assert len(rows) == 8 and all(len(r["outputs"]) == 3 and r["output"] == r["outputs"][1] == r["outputs"][2]
                                for r in rows)
  # Prompt 0 of the table decodes what its file decodes alone.
  result = run_cli("eval", "--gin_file=runs/quickstart_eval.gin", "--gin.PROMPT_LENGTH=4",
                   "--gin.EVAL_MAX_EXAMPLES=8", f"--gin.PROMPT_FILE={files[0]}",
                   f"--gin.EVAL_OUTPUT_DIR={tmp_path}/alone")
  assert result.returncode == 0, result.stderr[-3000:]
  alone = [json.loads(l) for l in open(tmp_path / "alone" / f"{TASK}.validation.predictions.jsonl")]
  assert [r["outputs"][0] for r in rows] == [r["output"] for r in alone]


def test_summarize_runs_reads_what_training_writes(trained, capsys):
  model_dir, _ = trained
  sys.path.insert(0, os.path.join(runs_testlib.REPO, "scripts"))
  import summarize_runs
  assert summarize_runs.main([model_dir, "--json"]) == 0
  (entry,) = json.loads(capsys.readouterr().out)
  evals = [l for l in map(json.loads, open(os.path.join(model_dir, "metrics.jsonl"))) if "eval/score" in l]
  best = max(evals, key=lambda l: l["eval/score"])
  settings = entry["settings"]
  assert (settings["size"], settings["prompt_length"], settings["prompt_init"]) == ("d_model 64", 4, "class_labels")
  assert entry["metrics"] == {f"{TASK}/accuracy": {"mean": round(best[f"eval/{TASK}/accuracy"], 2),
                                                   "std": None, "n": 1, "best_steps": [best["step"]]}}
  assert entry["params"] == 4_310_016  # the quickstart checkpoint holds exactly that many values


def test_help_explains_the_flags():
  for module in ("train", "eval", "infer"):
    result = run_cli(module, "--help")
    assert result.returncode == 0
    for flag in ("--gin_file", "--gin_search_paths", "--gin.NAME=VALUE"):
      assert flag in result.stdout, (module, flag)


def test_unknown_binding_is_one_line_and_writes_nothing(tmp_path):
  model_dir = tmp_path / "model"
  result = run_cli("train", "--gin_file=configs/runs/quickstart.gin", f"--gin.MODEL_DIR={model_dir}",
                   "--gin.train.no_such_argument=3")
  assert result.returncode != 0
  lines = runs_testlib.error_lines(result.stderr)
  assert len(lines) == 1 and "no_such_argument" in lines[0], result.stderr
  assert not model_dir.exists()
