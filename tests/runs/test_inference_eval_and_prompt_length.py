"""T5X's inference_eval/ files written at each evaluation of training, and eval / infer taking
PROMPT_LENGTH from the prompt file (or the run's MODEL_DIR)."""
import csv
import json
import os
import shutil

import numpy as np
import pytest

from prompt_tuning import eval as eval_main
from prompt_tuning import infer as infer_main
from prompt_tuning.checkpoints import prompt_io
from tests.runs import runs_testlib
from tests.runs.runs_testlib import TINY
from tests.runs.runs_testlib import run_cli

TASK = "quickstart_review_sentiment"
VALIDATION = os.path.join(runs_testlib.REPO, "prompt_tuning", "assets", "quickstart", "validation.tsv")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  model_dir = str(tmp_path_factory.mktemp("run") / "model")
  result = run_cli("train", *TINY, f"--gin.MODEL_DIR={model_dir}", "--gin.BATCH_SIZE=4")
  assert result.returncode == 0, result.stderr[-3000:]
  return model_dir


@pytest.fixture(autouse=True)
def _clean_gin():
  yield
  runs_testlib.clear_gin()


def _jsonl(path):
  return [json.loads(line) for line in open(path)]


def test_each_evaluation_writes_t5x_inference_files(trained):
  folder = os.path.join(trained, "inference_eval")
  assert sorted(os.listdir(folder)) == [f"{TASK}-000002.jsonl", f"{TASK}-000004.jsonl", f"{TASK}-metrics.jsonl"]
  with open(VALIDATION, newline="") as f:
    validation = [row for row in csv.DictReader(f, delimiter="\t")][:8]  # EVAL_MAX_EXAMPLES=8
  evals = {l["step"]: l for l in _jsonl(os.path.join(trained, "metrics.jsonl")) if "eval/score" in l}
  for step in (2, 4):
    rows = _jsonl(os.path.join(folder, f"{TASK}-{step:06d}.jsonl"))
    assert [r["input"]["inputs_pretokenized"] for r in rows] == [v["inputs"] for v in validation]
    assert [r["input"]["targets_pretokenized"] for r in rows] == [v["targets"] for v in validation]
    assert all(set(r) == {"input", "target", "prediction"} for r in rows)
    assert [r["target"] for r in rows] == [["positive", "negative"].index(v["targets"]) for v in validation]
    accuracy = 100 * np.mean([r["target"] == r["prediction"] for r in rows])
    assert accuracy == pytest.approx(evals[step][f"eval/{TASK}/accuracy"])
  metrics = _jsonl(os.path.join(folder, f"{TASK}-metrics.jsonl"))
  assert [m["step"] for m in metrics] == [2, 4]
  assert all(m["accuracy"] == pytest.approx(evals[m["step"]][f"eval/{TASK}/accuracy"]) for m in metrics)


def _eval(capsys, out, prompt_file, *extra):
  code = eval_main.main(["--gin_file=runs/quickstart_eval.gin", "--gin.EVAL_MAX_EXAMPLES=4",
                         f"--gin.PROMPT_FILE={prompt_file}", f"--gin.EVAL_OUTPUT_DIR={out}", *extra])
  return code, capsys.readouterr().err.strip().splitlines()


def test_eval_and_infer_take_the_prompt_length_from_the_file(trained, tmp_path, capsys):
  # No --gin.PROMPT_LENGTH: the models/ default is 100, the run's prompts hold 4.
  code, err = _eval(capsys, tmp_path / "dir", trained)  # a MODEL_DIR: its prompt_best.npy
  assert code == 0, err
  code, err = _eval(capsys, tmp_path / "npy", os.path.join(trained, "prompt_best.npy"))
  assert code == 0, err
  assert _jsonl(tmp_path / "dir" / "metrics.jsonl")[0][f"eval/{TASK}/accuracy"] == (
      _jsonl(tmp_path / "npy" / "metrics.jsonl")[0][f"eval/{TASK}/accuracy"])
  adapter = prompt_io.save_peft(str(tmp_path / "peft"), np.load(os.path.join(trained, "prompts", "prompt_2.npy")),
                                num_layers=2, num_attention_heads=4)
  code = infer_main.main(["--gin_file=runs/quickstart_infer.gin", "--gin.INFER_MAX_EXAMPLES=3",
                          f"--gin.PROMPT_FILE={adapter}", f"--gin.INFER_OUTPUT_DIR={tmp_path}/infer"])
  assert code == 0, capsys.readouterr().err
  assert len(_jsonl(tmp_path / "infer" / f"{TASK}.validation.predict.jsonl")) == 3


def test_a_disagreeing_prompt_length_is_refused_in_one_line(trained, tmp_path, capsys):
  code, err = _eval(capsys, tmp_path / "a", trained, "--gin.PROMPT_LENGTH=5")
  assert code == 2 and len(err) == 1, err
  assert "--gin.PROMPT_LENGTH=5 disagrees with prompt file" in err[0] and "holds 4 prompt vectors" in err[0]
  fake_run = tmp_path / "run"  # a prompt file whose run says another length
  (fake_run / "prompts").mkdir(parents=True)
  shutil.copy(os.path.join(trained, "prompts", "prompt_4.npy"), fake_run / "prompts" / "prompt_4.npy")
  (fake_run / "config.gin").write_text(open(os.path.join(trained, "config.gin")).read().replace(
      "PROMPT_LENGTH = 4", "PROMPT_LENGTH = 7"))
  code, err = _eval(capsys, tmp_path / "b", fake_run / "prompts" / "prompt_4.npy")
  assert code == 2 and len(err) == 1 and "its run's config.gin says PROMPT_LENGTH = 7" in err[0], err
  np.save(tmp_path / "p3.npy", np.zeros((3, 64), np.float32))
  code, err = _eval(capsys, tmp_path / "c", [os.path.join(trained, "prompt_best.npy"), str(tmp_path / "p3.npy")])
  assert code == 2 and len(err) == 1 and "prompts of different lengths" in err[0], err
  assert not any((tmp_path / name).exists() for name in "abc")
