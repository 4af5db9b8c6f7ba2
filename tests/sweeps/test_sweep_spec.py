"""Sweeps multiplied out: products, linked axes, grids, ${vars}, run names, the manifest."""
import os
import shlex
import sys

import pytest

from prompt_tuning.sweeps import expand, spec
from tests.sweeps.sweeps_testlib import QUICKSTART, manifest, run, write_json

LM100K = "gs://t5-data/pretrained_models/t5x/t5_1_1_lm100k_{}/checkpoint_1100000"


def test_product_of_macro_axes_with_names_folders_and_commands(capsys, tmp_path):
  root = tmp_path / "lengths"
  code, out, err = run(capsys, *QUICKSTART, "--gin.TRAIN_STEPS=7", "--sweep", "PROMPT_LENGTH=1,5",
                       "--sweep", "SEED=0,1", f"--root={root}", "--launcher=print")
  assert code == 0, err
  names = ["PROMPT_LENGTH=1,SEED=0", "PROMPT_LENGTH=1,SEED=1", "PROMPT_LENGTH=5,SEED=0",
           "PROMPT_LENGTH=5,SEED=1"]  # the last axis varies fastest
  assert len(out) == 4
  for line, name in zip(out, names):
    argv = shlex.split(line)
    assert argv[:3] == [sys.executable, "-m", "prompt_tuning.train"]
    length, seed = (part.split("=")[1] for part in name.split(","))
    assert argv[3:] == ["--gin_file=runs/quickstart.gin", f"--gin.PROMPT_LENGTH={length}",
                        f"--gin.SEED={seed}", "--gin.TRAIN_STEPS=7", f"--gin.MODEL_DIR={root}/{name}"]
  written = manifest(root)
  assert [r["name"] for r in written["runs"]] == names
  assert [r["command"] for r in written["runs"]] == out
  assert written["runs"][3]["settings"] == {"PROMPT_LENGTH": "5", "SEED": "1"}
  assert written["runs"][0]["train_steps"] == 7 and written["runs"][0]["early_stopping_patience"] is None
  assert written["axes"] == {"PROMPT_LENGTH": {"kind": "macro", "binds": ["PROMPT_LENGTH"]},
                             "SEED": {"kind": "macro", "binds": ["SEED"]}}
  assert sorted(os.listdir(root)) == ["sweep.json"]  # print starts nothing


def test_linked_axis_places_its_gin_file_and_checkpoint_and_vars_override(capsys, tmp_path):
  flags = ["--gin_file={size}", "--gin_file=prompts/from_random_uniform.gin",
           "--gin_file=runs/prompt_finetune.gin", "--gin.MIXTURE_OR_TASK_NAME=taskless_super_glue_rte_v102",
           "--sweep", "size=small,base", "--launcher=print"]
  code, out, _ = run(capsys, *flags, f"--root={tmp_path}/a")
  assert code == 0
  for line, size in zip(out, ("small", "base")):
    argv = shlex.split(line)
    assert argv[3:6] == [f"--gin_file=models/t5_1_1_{size}_prompt.gin",
                         "--gin_file=prompts/from_random_uniform.gin", "--gin_file=runs/prompt_finetune.gin"]
    assert f"--gin.INITIAL_CHECKPOINT_PATH={LM100K.format(size)}" in argv
  code, out, _ = run(capsys, *flags, "--var", "CHECKPOINTS=/data/t5x", f"--root={tmp_path}/b")
  assert "--gin.INITIAL_CHECKPOINT_PATH=/data/t5x/t5_1_1_lm100k_base/checkpoint_1100000" in shlex.split(out[1])


def _figure1_like(tmp_path):
  return write_json(tmp_path / "fig.json", {
      "gin_files": ["{size}", "{method}"],
      "axes": {"method": {"prompt": {"gin_files": ["prompts/from_random_uniform.gin", "runs/prompt_finetune.gin"]},
                          "model": {"gin_files": ["runs/prompt_finetune.gin"], "bindings": {"PROMPT_LENGTH": 0},
                                    "vars": {"CHECKPOINT": "/ckpt/${size}"}},
                          "multi": {"gin_files": ["runs/prompt_finetune.gin"],
                                    "bindings": {"MIXTURE_OR_TASK_NAME": "mixture"}}}},
      "sweep": [{"size": ["small", "base"], "method": ["prompt", "model"], "task": ["rte", "cb"], "SEED": [0]},
                {"size": ["small", "base"], "method": ["multi"], "SEED": [0]}]})


@pytest.mark.parametrize("flags, names", [
    ([], 10),
    (["--sweep", "method=prompt"], ["size=small,method=prompt,task=rte,SEED=0",
                                    "size=small,method=prompt,task=cb,SEED=0",
                                    "size=base,method=prompt,task=rte,SEED=0",
                                    "size=base,method=prompt,task=cb,SEED=0"]),
    (["--sweep", "method=model,multi", "--sweep", "size=base", "--sweep", "task=cb"],
     ["size=base,method=model,task=cb,SEED=0", "size=base,method=multi,SEED=0"]),
    (["--sweep", "SEED=3,4", "--sweep", "method=multi", "--sweep", "size=small"],
     ["size=small,method=multi,SEED=3", "size=small,method=multi,SEED=4"]),
])
def test_grids_and_how_sweep_flags_change_them(capsys, tmp_path, flags, names):
  code, _, err = run(capsys, f"--sweep_file={_figure1_like(tmp_path)}", *flags, f"--root={tmp_path}/r",
                       "--launcher=print")
  assert code == 0, err
  written = [r["name"] for r in manifest(tmp_path / "r")["runs"]]
  assert written == names if isinstance(names, list) else len(written) == names


def test_grid_values_bind_what_they_say(capsys, tmp_path):
  assert run(capsys, f"--sweep_file={_figure1_like(tmp_path)}", f"--root={tmp_path}/r", "--launcher=print")[0] == 0
  runs = {r["name"]: r for r in manifest(tmp_path / "r")["runs"]}
  model = runs["size=base,method=model,task=cb,SEED=0"]
  assert model["gin_files"] == ["models/t5_1_1_base_prompt.gin", "runs/prompt_finetune.gin"]
  assert model["bindings"]["INITIAL_CHECKPOINT_PATH"] == "/ckpt/base"  # the method's var wins
  assert model["bindings"]["PROMPT_LENGTH"] == "0"
  assert model["bindings"]["MIXTURE_OR_TASK_NAME"] == "taskless_super_glue_cb_v102"
  prompt = runs["size=small,method=prompt,task=rte,SEED=0"]
  assert prompt["bindings"]["INITIAL_CHECKPOINT_PATH"] == LM100K.format("small")
  assert runs["size=small,method=multi,SEED=0"]["bindings"]["MIXTURE_OR_TASK_NAME"] == "mixture"


def test_vars_nest_escape_and_name_axis_values():
  sweep = spec.Sweep(vars={"A": "${B}/x", "B": "${size}-$$"}, gin_files=["{size}"],
                     axes={"size": {"s": spec.Value(gin_files=["m_${A}.gin"], bindings={"X": "'${A}'"})}},
                     grids=[{"size": ["s"], "Y": ["'a,b'"]}])
  (only,) = expand.expand(sweep, {}, "/root")
  assert only.gin_files == ["m_s-$/x.gin"] and only.bindings["X"] == "'s-$/x'"
  assert only.bindings["Y"] == "'a,b'" and only.bindings["MODEL_DIR"] == f"/root/{only.name}"
  assert only.name.startswith("size=s,Y=a_b-") and len(only.name.split("-")[-1]) == 6  # hashed: changed


def test_split_values_keeps_brackets_and_quotes():
  assert spec.split_values("1,5, 20") == ["1", "5", "20"]
  assert spec.split_values("['a', 'b'],['c,d']") == ["['a', 'b']", "['c,d']"]
  assert spec.split_values("'x,y',{'k': 1, 'j': 2}") == ["'x,y'", "{'k': 1, 'j': 2}"]


def test_same_sweep_again_is_accepted_and_resume_adds_runs(capsys, tmp_path):
  base = [*QUICKSTART, "--sweep", "SEED=0,1", f"--root={tmp_path}", "--launcher=print"]
  assert run(capsys, *base)[0] == 0
  assert run(capsys, *base)[0] == 0  # the same sweep: accepted
  assert run(capsys, *QUICKSTART, "--sweep", "SEED=1,2", f"--root={tmp_path}", "--launcher=print",
             "--resume")[0] == 0
  assert [r["name"] for r in manifest(tmp_path)["runs"]] == ["SEED=0", "SEED=1", "SEED=2"]
