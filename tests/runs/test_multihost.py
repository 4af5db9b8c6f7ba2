"""A multi-host job, simulated by two CPU processes of two devices each on one (2, 2) mesh.

The job must compute exactly what one process over the same four devices computes, resume from
its own checkpoints, and write every file once (the primary host writes, the other waits).
"""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.runs import runs_testlib
from tests.runs.runs_testlib import REPO
from tests.runs.runs_testlib import TINY
from tests.runs.runs_testlib import run_cli

MESH = ["--gin.BATCH_SIZE=4", "--gin.MESH_SHAPE=(2,2)"]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def run_job(module: str, *args: str, processes: int = 2) -> list:
  """`python -m prompt_tuning.<module>` as a job of `processes` hosts with 2 CPU devices each."""
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3",
         "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
  job = [f"--coordinator_address=localhost:{_free_port()}", f"--process_count={processes}"]
  procs = [subprocess.Popen([sys.executable, "-m", f"prompt_tuning.{module}", *args, *job,
                             f"--process_index={i}"], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
           for i in range(processes)]
  results = []
  for p in procs:
    out, err = p.communicate(timeout=400)
    results.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
  return results


def _ok(results):
  for r in results:
    assert r.returncode == 0, r.stderr[-3000:]
  return results


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """A 2-host job of 4 steps resumed to 6, and one process over 4 devices for 6 steps."""
  root = tmp_path_factory.mktemp("multihost")
  job_dir, one_dir = str(root / "job"), str(root / "one")
  first = _ok(run_job("train", *TINY, *MESH, f"--gin.MODEL_DIR={job_dir}"))
  resumed = _ok(run_job("train", *TINY, *MESH, f"--gin.MODEL_DIR={job_dir}", "--gin.TRAIN_STEPS=6"))
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3",
         "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
  one = subprocess.run([sys.executable, "-m", "prompt_tuning.train", *TINY, *MESH,
                        f"--gin.MODEL_DIR={one_dir}", "--gin.TRAIN_STEPS=6"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=400)
  assert one.returncode == 0, one.stderr[-3000:]
  return job_dir, one_dir, first, resumed


def _metrics(model_dir):
  return [json.loads(line) for line in open(os.path.join(model_dir, "metrics.jsonl"))]


def test_job_equals_one_process_on_the_same_mesh(runs):
  job_dir, one_dir, _, _ = runs
  for step in (2, 4, 6):
    job = np.load(os.path.join(job_dir, "prompts", f"prompt_{step}.npy"))
    one = np.load(os.path.join(one_dir, "prompts", f"prompt_{step}.npy"))
    np.testing.assert_allclose(job, one, rtol=0, atol=1e-6, err_msg=f"prompt at step {step}")
  job, one = _metrics(job_dir), _metrics(one_dir)
  assert [m["step"] for m in job] == [m["step"] for m in one]  # each line written once, by one host
  for a, b in zip(job, one):
    for key in a.keys() & b.keys() - {"train/steps_per_second", "train/examples_per_second"}:
      assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), (a["step"], key)


def test_job_resumes_from_its_checkpoint_and_leaves_no_temporary_folders(runs):
  job_dir, _, first, resumed = runs
  assert "resuming from" in resumed[0].stdout and "(step 4)" in resumed[0].stdout
  assert sorted(os.listdir(os.path.join(job_dir, "prompts"))) == [f"prompt_{s}.npy" for s in (2, 4, 6)]
  assert [n for n in os.listdir(job_dir) if n.startswith(".tmp")] == []
  meta = json.load(open(os.path.join(job_dir, "checkpoint_6", "metadata.json")))
  assert meta["step"] == 6 and meta["data_state"]["position"] == 6


def test_only_the_primary_host_reports(runs):
  _, _, first, _ = runs
  assert "done: 4 steps" in first[0].stdout
  assert "done:" not in first[1].stdout and "step 2:" not in first[1].stderr


def test_eval_job_writes_the_training_eval_once(runs, tmp_path):
  job_dir, _, _, _ = runs
  out = tmp_path / "eval"
  results = _ok(run_job("eval", "--gin_file=runs/quickstart_eval.gin", "--gin.PROMPT_LENGTH=4",
                        "--gin.EVAL_MAX_EXAMPLES=8", *MESH,
                        f"--gin.PROMPT_FILE={job_dir}/prompts/prompt_4.npy",
                        f"--gin.EVAL_OUTPUT_DIR={out}"))
  task = "quickstart_review_sentiment"
  written = [json.loads(l) for l in open(out / "metrics.jsonl")]
  at_step_4 = next(m for m in _metrics(job_dir) if m["step"] == 4 and f"eval/{task}/loss" in m)
  assert len(written) == 1
  assert written[0][f"eval/{task}/loss"] == pytest.approx(at_step_4[f"eval/{task}/loss"], rel=1e-5)
  assert len(open(out / f"{task}.validation.predictions.jsonl").readlines()) == 8
  assert "eval/score" in results[0].stdout and "eval/score" not in results[1].stdout


@pytest.mark.parametrize("flags, message", [
    (["--process_count=2"], "go together"),
    (["--coordinator_address=localhost:1", "--process_count=2", "--process_index=2"], "not in [0"),
])
def test_inconsistent_job_flags_are_one_line_errors(flags, message):
  result = run_cli("train", "--gin_file=configs/runs/quickstart.gin", *flags)
  lines = runs_testlib.error_lines(result.stderr)
  assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr[-2000:]
