"""The paper's sweeps shipped in configs/sweeps/: their runs, what each run binds, their tasks."""
import ast
import os

import pytest

from prompt_tuning.config import gin_config as gin_utils
from prompt_tuning.sweeps import expand, spec
from tests.sweeps.sweeps_testlib import manifest, run

CONFIGS = gin_utils.find_configs_dir()
SIZES = ("small", "base", "large", "xl", "xxl")
# runs per file: sizes x methods x 8 tasks x seeds (+ multi-task model tuning: sizes x seeds), ...
COUNTS = {"figure1": 5 * 2 * 8 * 3 + 5 * 3, "figure3a": 5 * 5 * 8 * 3, "figure3b": 5 * 3 * 8 * 3,
          "figure3c": 5 * 3 * 8 * 3, "figure3d": 5 * 8 * 3, "table1": 2 * 3, "table2": 2 * 2 * 3,
          "table3": 8 * 5, "table3_ensemble": 8, "demo_quickstart": 4 * 3 * 2 + 2}


def _runs(name, *flags):
  sweep = spec.load([name], CONFIGS)
  overrides = spec.apply_flags(sweep, [], [], ["PROMPTS=/p"], list(flags))
  return {r.name: r for r in expand.expand(sweep, overrides, "/root")}


def test_every_shipped_sweep_is_listed_with_its_run_count():
  shipped = sorted(f[:-5] for f in os.listdir(os.path.join(CONFIGS, "sweeps")) if f != "axes.json")
  assert shipped == sorted(COUNTS)
  assert {name: len(_runs(name)) for name in shipped} == COUNTS


@pytest.mark.parametrize("name, flags", [
    ("figure1", ["method=prompt", "size=base", "task=rte,record"]), ("figure3a", ["size=small", "task=cb"]),
    ("figure3b", ["task=wsc", "SEED=0"]), ("figure3c", ["size=xl", "task=rte"]), ("figure3d", ["task=copa"]),
    ("table1", ["method=prompt"]), ("table2", ["method=prompt"]), ("table3", ["task=rte"]),
    ("table3_ensemble", []), ("demo_quickstart", ["method=prompt"])])
def test_shipped_sweeps_pass_the_gin_checks(capsys, tmp_path, name, flags):
  code, out, err = run(capsys, f"--sweep_file={name}", *[f"--sweep={f}" for f in flags], "--var=PROMPTS=/p",
                       f"--root={tmp_path}", "--dry_run")
  assert code == 0, err
  assert out[0].startswith(f"{len(out) - 1} runs in {tmp_path} (dry run")


@pytest.mark.parametrize("name", ["figure1", "table1", "table2", "demo_quickstart"])
def test_sweeps_with_model_tuning_pass_the_gin_checks(capsys, tmp_path, name):
  code, _, err = run(capsys, f"--sweep_file={name}", "--sweep=SEED=0", f"--root={tmp_path}", "--dry_run")
  assert code == 0, err


def test_figure1_methods_and_checkpoints():
  runs = _runs("figure1")
  prompt, model = runs["size=xl,method=prompt,task=cb,SEED=1"], runs["size=xl,method=model,task=cb,SEED=1"]
  assert prompt.gin_files == ["models/t5_1_1_xl_prompt.gin", "prompts/from_class_labels.gin",
                              "runs/prompt_finetune.gin"]
  assert prompt.bindings["INITIAL_CHECKPOINT_PATH"] == \
      "gs://t5-data/pretrained_models/t5x/t5_1_1_lm100k_xl/checkpoint_1100000"
  assert ast.literal_eval(prompt.bindings["CLASS_LABELS"]) == ["entailment", "contradiction", "neutral"]
  assert model.gin_files == ["models/t5_1_1_xl_prompt.gin", "runs/model_finetune.gin"]
  assert model.bindings["INITIAL_CHECKPOINT_PATH"] == "gs://t5-data/pretrained_models/t5x/t5_1_1_xl/checkpoint_1000000"
  assert (model.bindings["TRAINABLE"], model.bindings["PROMPT_LENGTH"]) == ("['.*']", "0")
  multi = runs["size=small,method=multitask_model,SEED=2"]
  assert multi.bindings["MIXTURE_OR_TASK_NAME"] == "super_glue_v102_proportional"
  assert sum(1 for r in runs.values() if r.settings["method"] == "multitask_model") == 15


def test_figure3_ablations_bind_their_setting():
  sentinel = _runs("figure3c")["size=base,objective=span_corruption_sentinel,task=rte,SEED=0"].bindings
  assert sentinel["MIXTURE_OR_TASK_NAME"] == "taskless_sentinel_super_glue_rte_v102"
  assert sentinel["INITIAL_CHECKPOINT_PATH"].endswith("/t5_1_1_base/checkpoint_1000000")
  record = _runs("figure3b")["size=large,init=class_label,task=record,SEED=0"]
  assert record.gin_files[1] == "prompts/from_class_labels.gin"
  assert ast.literal_eval(record.bindings["TASK_FEATURE_LENGTHS"]) == {"inputs": 512, "targets": 32}
  assert "CLASS_LABELS" not in _runs("figure3b")["size=large,init=sampled_vocab,task=rte,SEED=0"].bindings
  assert _runs("figure3a")["size=small,PROMPT_LENGTH=150,task=wic,SEED=2"].bindings["PROMPT_LENGTH"] == "150"
  sweep = spec.load(["figure3d"], CONFIGS)
  overrides = spec.apply_flags(sweep, [], [], ["CHECKPOINT=/ck/lm${lm_steps}_${size}"], ["lm_steps=10000,100000"])
  runs = {r.name: r for r in expand.expand(sweep, overrides, "/root")}
  assert runs["size=xxl,lm_steps=10000,task=rte,SEED=0"].bindings["INITIAL_CHECKPOINT_PATH"] == "/ck/lm10000_xxl"
  assert len(runs) == 2 * COUNTS["figure3d"]  # with the user's own checkpoints the runs differ


def test_transfer_tables_select_on_the_training_task():
  table2 = _runs("table2")
  qqp = table2["size=xxl,transfer=qqp_to_mrpc,method=prompt,SEED=0"]
  assert qqp.bindings["MIXTURE_OR_TASK_NAME"] == "glue_qqp_to_mrpc_zeroshot_v100"
  assert qqp.select == "taskless_glue_qqp_v100"
  assert table2["size=xxl,transfer=mrpc_to_qqp,method=model,SEED=2"].select == "taskless_glue_mrpc_v100"
  assert {r.select for r in _runs("table1").values()} == {"squad_v110"}


def test_table3_ensemble_reads_the_five_prompts_table3_writes(capsys, tmp_path):
  assert run(capsys, "--sweep_file=table3", "--sweep=task=rte", f"--root={tmp_path}/t3", "--launcher=print")[0] == 0
  trained = [r["dir"] for r in manifest(tmp_path / "t3")["runs"]]
  sweep = spec.load(["table3_ensemble"], CONFIGS)
  spec.apply_flags(sweep, [], [], [f"PROMPTS={tmp_path}/t3"], ["task=rte"])
  (ensemble,) = expand.expand(sweep, {}, str(tmp_path / "e"))
  assert ast.literal_eval(ensemble.bindings["PROMPT_FILE"]) == [f"{d}/prompt_best.npy" for d in trained]
  assert ensemble.bindings["EVAL_OUTPUT_DIR"] == f"{tmp_path}/e/size=xxl,task=rte"


def test_every_task_of_the_shipped_sweeps_is_registered():
  import seqio

  import prompt_tuning.data  # noqa: F401  registers the tasks
  names = set(seqio.TaskRegistry.names()) | set(seqio.MixtureRegistry.names())
  used = {r.bindings["MIXTURE_OR_TASK_NAME"] for name in COUNTS if name != "demo_quickstart"
          for r in _runs(name).values() if r.settings.get("method") != "multitask_model"}
  assert len(used) == 8 * 2 + 3 and used <= names, used - names
