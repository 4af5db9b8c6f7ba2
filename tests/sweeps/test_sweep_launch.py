"""Launchers: local runs a real 4-run sweep end to end (skip, resume); the SLURM script runs the
command `print` gives for its array index; parallel slots get their own devices."""
import json
import os
import shlex
import subprocess
import sys

from prompt_tuning.sweeps import launch
from tests.runs.runs_testlib import TINY
from tests.sweeps.sweeps_testlib import manifest, run

# 4 runs: 2 initializations x 2 seeds of the tiny quickstart (4 steps, an evaluation every 2).
SWEEP = [*TINY, "--gin_file={init}", "--var=LABELS=['positive', 'negative']",
         "--sweep=init=random_uniform,class_label", "--sweep=SEED=0,1"]
NAMES = ["init=random_uniform,SEED=0", "init=random_uniform,SEED=1", "init=class_label,SEED=0",
         "init=class_label,SEED=1"]


def test_local_sweep_end_to_end_skips_finished_and_resumes_interrupted(capsys, tmp_path, one_cpu_device):
  root = tmp_path / "sweep"
  code, printed, _ = run(capsys, *SWEEP, f"--root={root}", "--launcher=print")
  assert code == 0 and len(printed) == 4
  # Interrupt one run after 2 of its 4 steps: its own command with TRAIN_STEPS=2 bound last.
  subprocess.run(shlex.split(printed[2]) + ["--gin.TRAIN_STEPS=2"], check=True, capture_output=True)
  code, out, err = run(capsys, *SWEEP, f"--root={root}", "--parallel=2")
  assert code == 0, (out, err)
  lines = {line.split("] ", 1)[1].split(": ", 1)[0]: line for line in out}
  assert sorted(lines) == sorted(NAMES) and len(out) == 4  # one line per run
  assert "resumed from step 2, finished at step 4" in lines[NAMES[2]]
  for name in NAMES:
    assert "finished at step 4, best eval/score" in lines[name]
    rows = [json.loads(l) for l in open(root / name / "metrics.jsonl")]
    assert [r["step"] for r in rows if "eval/score" in r] == [2, 4]  # the resumed run too
    config = open(root / name / "config.gin").read()
    assert f"SEED = {name[-1]}" in config and "TRAIN_STEPS = 4" in config
    init = "random_uniform" if "random" in name else "class_labels"
    assert f"PROMPT_INIT = @prompt_tuning.model.prompts.{init}()" in config
    assert os.path.isfile(root / "logs" / f"{name}.log")
  code, out, _ = run(capsys, *SWEEP, f"--root={root}")
  assert code == 0 and len(out) == 4 and all("already finished at step 4" in l and "skipped" in l for l in out)
  code, out, _ = run(capsys, *SWEEP, f"--root={root}", "--dry_run")
  assert all("[finished at step 4, best eval/score" in l for l in out[1:])
  assert [r["name"] for r in manifest(root)["runs"]] == NAMES


def _fake_plan(tmp_path, commands):
  from prompt_tuning.sweeps import plan
  entries = [{"name": f"r{i}", "dir": str(tmp_path / f"r{i}"), "entry": "train", "train_steps": 1}
             for i in range(len(commands))]
  return plan.Plan(None, str(tmp_path), [], {e["name"]: c for e, c in zip(entries, commands)}, {},
                   {"runs": entries}), entries


def test_parallel_slots_get_their_own_devices_and_failures_are_reported(capsys, tmp_path):
  write = 'echo "$CUDA_VISIBLE_DEVICES" > {}/{}.devices'
  commands = [["sh", "-c", write.format(tmp_path, i)] for i in range(3)] + [["sh", "-c", "echo boom; exit 3"]]
  plan, entries = _fake_plan(tmp_path, commands)
  assert launch.local(plan, entries, launch._slots(2, "4,5,6,7")) == 1
  seen = {open(tmp_path / f"{i}.devices").read().strip() for i in range(3)}
  assert seen == {"4,5", "6,7"}
  out = capsys.readouterr().out.splitlines()
  assert any(l.startswith("[4/4] r3: FAILED (exit 3)") and "boom" in l for l in out)
  assert out[-1].startswith("1 of 4 runs failed")
  assert launch._slots(3, "0,1,2,3,4,5") == [{"CUDA_VISIBLE_DEVICES": d} for d in ("0,1", "2,3", "4,5")]


def test_slurm_script_runs_the_printed_command_of_its_array_index(capsys, tmp_path):
  flags = [*SWEEP, "--multiprocess_gpu", f"--root={tmp_path}/sweep"]
  code, printed, _ = run(capsys, *flags, "--launcher=print")
  assert code == 0
  code, out, _ = run(capsys, *flags, "--launcher=slurm", "--nodes=2", "--gpus_per_node=8", "--time=4:00:00",
                     "--partition=gpu", "--max_running=2", "--sbatch=account=proj", "--setup=echo ready")
  script = tmp_path / "sweep" / "sweep.sbatch"
  assert code == 0 and out == [f"wrote {script}: 4 array tasks; submit it with: sbatch {script}"]
  text = script.read_text()
  for option in ("--array=0-3%2", "--nodes=2", "--ntasks-per-node=1", "--gpus-per-node=8", "--time=4:00:00",
                 "--partition=gpu", "--account=proj", f"--output={tmp_path}/sweep/logs/slurm-%A_%a.log"):
    assert f"#SBATCH {option}\n" in text
  stubs = tmp_path / "bin"
  stubs.mkdir()
  (stubs / "srun").write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\0" "$a"; done > "$SRUN_ARGS"\n')
  (stubs / "sbatch").write_text("#!/bin/sh\nexit 1\n")  # the script must never submit itself
  for stub in stubs.iterdir():
    stub.chmod(0o755)
  for index in (0, 3):
    env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "SLURM_ARRAY_TASK_ID": str(index),
           "SRUN_ARGS": str(tmp_path / "srun_args")}
    result = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0 and result.stdout == "ready\n", result.stderr
    args = (tmp_path / "srun_args").read_text().split("\0")[:-1]
    assert args == ["bash", "-c", printed[index]]
    assert "--multiprocess_gpu" in shlex.split(printed[index])
  assert sys.executable in printed[0]
