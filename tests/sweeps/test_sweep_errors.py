"""Bad sweep input: one line `prompt_tuning.sweep: error: ...`, exit 2, nothing written or started."""
import os

import pytest

from tests.sweeps.sweeps_testlib import QUICKSTART, run, write_json

MODELS = ["--gin_file={size}", "--gin_file=prompts/from_random_uniform.gin",
          "--gin_file=runs/prompt_finetune.gin", "--gin.MIXTURE_OR_TASK_NAME=taskless_super_glue_rte_v102"]


def _file(tmp_path, obj):
  return f"--sweep_file={write_json(tmp_path / 'bad.json', obj)}"


CASES = {
    "unknown axis": (lambda t: [*QUICKSTART, "--sweep", "PROMPT_LENGHT=1,5"],
                     ["unknown sweep axis PROMPT_LENGHT", "did you mean PROMPT_LENGTH"]),
    "unknown macro": (lambda t: [*QUICKSTART, "--sweep", "SEED=0", "--gin.TRAIN_STEP=3"],
                      ["unknown macro TRAIN_STEP", "did you mean TRAIN_STEPS"]),
    "empty axis": (lambda t: [*QUICKSTART, "--sweep", "SEED="], ["--sweep SEED", "empty"]),
    "empty value": (lambda t: [*QUICKSTART, "--sweep", "SEED=0,,1"], ["empty"]),
    "empty axis in a file": (lambda t: [_file(t, {"gin_files": ["runs/quickstart.gin"], "sweep": {"SEED": []}})],
                             ["sweep.SEED", "empty"]),
    "two axes bind a macro": (lambda t: [*MODELS, "--sweep", "size=small",
                                         "--sweep", "INITIAL_CHECKPOINT_PATH=/a,/b"],
                              ["axes size and INITIAL_CHECKPOINT_PATH", "both bind INITIAL_CHECKPOINT_PATH"]),
    "a flag binds a swept macro": (lambda t: [*QUICKSTART, "--sweep", "SEED=0,1", "--gin.SEED=3"],
                                   ["--gin.SEED", "--sweep SEED="]),
    "unknown value of a linked axis": (lambda t: [*MODELS, "--sweep", "size=huge"],
                                       ["no value 'huge'", "small, base, large, xl, xxl"]),
    "gin files with no place": (lambda t: [*MODELS[1:], "--sweep", "size=small"], ["{size}"]),
    "a var that is not given": (lambda t: ["--sweep_file=table3_ensemble"], ["needs --var PROMPTS="]),
    "an undefined var": (lambda t: [*QUICKSTART, "--sweep", "SEED=0", "--gin.TRAIN_STEPS=${NOPE}"],
                         ["${NOPE} is not defined"]),
    "an axis that changes nothing": (lambda t: ["--sweep_file=figure3d", "--sweep", "lm_steps=10000,100000"],
                                     ["the same run", "lm_steps"]),
    "output folder bound": (lambda t: [*QUICKSTART, "--sweep", "SEED=0", "--gin.MODEL_DIR=/tmp/x"],
                            ["MODEL_DIR", "--root"]),
    "unknown key in a file": (lambda t: [_file(t, {"sweeps": {"SEED": [0]}})], ["unknown key 'sweeps'"]),
    "not JSON": (lambda t: [f"--sweep_file={t / 'x.json'}"], ["cannot read sweep file"]),
    "unknown sweep file": (lambda t: ["--sweep_file=figure9"], ["'figure9' not found", "figure1"]),
    "nothing to sweep": (lambda t: [*QUICKSTART], ["nothing to sweep"]),
    "missing gin file": (lambda t: ["--gin_file=runs/nope.gin", "--sweep", "SEED=0"], ["nope.gin", "not found"]),
    "bad gin value": (lambda t: [*QUICKSTART, "--sweep", "SEED=0", "--gin.TRAIN_STEPS=@nope()"], ["--gin.TRAIN_STEPS=@nope()", "No configurable matching"]),
    "multi-node without --multiprocess_gpu": (
        lambda t: [*QUICKSTART, "--sweep", "SEED=0", "--launcher=slurm", "--nodes=2"], ["--multiprocess_gpu"]),
    "a local flag with print": (lambda t: [*QUICKSTART, "--sweep", "SEED=0", "--launcher=print", "--parallel=2"],
                                ["--parallel"]),
    "a slurm flag with local": (lambda t: [*QUICKSTART, "--sweep", "SEED=0", "--time=1:00:00"], ["--time"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_writes_nothing(capsys, tmp_path, case):
  (tmp_path / "x.json").write_text("{not json")
  flags, needles = CASES[case]
  root = tmp_path / "root"
  code, out, err = run(capsys, *flags(tmp_path), f"--root={root}")
  assert code == 2 and out == []
  assert len(err) == 1 and err[0].startswith("prompt_tuning.sweep: error: "), err
  for needle in needles:
    assert needle in err[0], err[0]
  assert not root.exists()


def test_a_root_holding_another_sweep_is_refused_unless_resume(capsys, tmp_path):
  root = tmp_path / "root"
  assert run(capsys, *QUICKSTART, "--sweep", "SEED=0,1", f"--root={root}", "--launcher=print")[0] == 0
  before = (root / "sweep.json").read_bytes()
  for flags, needle in [(["--sweep", "SEED=0,1,2"], "holds a different sweep"),
                        (["--sweep", "SEED=0,1", "--gin.TRAIN_STEPS=9"], "never replaced"),
                        (["--sweep", "SEED=1", "--gin.TRAIN_STEPS=9", "--resume"], "never replaced")]:
    code, out, err = run(capsys, *QUICKSTART, *flags, f"--root={root}", "--launcher=print")
    assert code == 2 and out == [] and len(err) == 1 and needle in err[0], err
    assert (root / "sweep.json").read_bytes() == before
  os.makedirs(tmp_path / "other")
  (tmp_path / "other" / "notes.txt").write_text("mine")
  code, _, err = run(capsys, *QUICKSTART, "--sweep", "SEED=0", f"--root={tmp_path / 'other'}")
  assert code == 2 and "holds no sweep" in err[0] and os.listdir(tmp_path / "other") == ["notes.txt"]


@pytest.mark.parametrize("kind, flags, needle", [
    ("figure1", [], "has an evaluation yet"), ("figure3", ["--setting=SEED"], "has an evaluation yet"),
    ("curves", [], "has written metrics yet")])
def test_plotting_a_sweep_without_evaluations_is_one_line_and_writes_nothing(capsys, tmp_path, kind, flags, needle):
  root = tmp_path / "root"
  assert run(capsys, *QUICKSTART, "--sweep", "SEED=0,1", f"--root={root}", "--launcher=print")[0] == 0
  os.makedirs(root / "SEED=0")  # started, nothing written yet
  code, out, err = run(capsys, "plot", kind, str(root), *flags)
  assert code == 2 and out == [] and len(err) == 1, err
  assert err[0].startswith("prompt_tuning.sweep: error: ") and needle in err[0]
  assert sorted(os.listdir(root)) == ["SEED=0", "sweep.json"]
