"""The gin tree: every file parses, and the defaults are the paper's setup (§3)."""
import glob
import os

import gin
import pytest

from prompt_tuning.config import gin_config as gin_utils
from prompt_tuning.config.errors import UsageError
from prompt_tuning.model import t5
from tests.runs import runs_testlib

CONFIGS = os.path.join(runs_testlib.REPO, "configs")
REQUIRED = ["MIXTURE_OR_TASK_NAME='t'", "MODEL_DIR='/tmp/x'", "INITIAL_CHECKPOINT_PATH=None"]


@gin.configurable
def _probe(model=None, optimizer=None, prompt_init=None, decode_fn=None):
  return model, optimizer, prompt_init, decode_fn


@pytest.fixture(autouse=True)
def _clean_gin():
  yield
  runs_testlib.clear_gin()


def _parse(files, bindings=()):
  gin_utils.parse(files, list(bindings) + ["_probe.model=%MODEL", "_probe.optimizer=%OPTIMIZER",
                                           "_probe.prompt_init=%PROMPT_INIT", "_probe.decode_fn=%DECODE_FN"])
  return _probe()


def q(name):
  return gin.query_parameter(name)


def test_default_finetune_config_is_the_papers_setup():
  model, optimizer, prompt_init, decode_fn = _parse(
      ["models/t5_1_1_base_prompt.gin", "prompts/from_class_labels.gin", "runs/prompt_finetune.gin"],
      REQUIRED + ["CLASS_LABELS=['yes', 'no']"])
  assert model.prompt_length == 100 and model.placement == "prefix"
  assert model.cfg.dropout_rate == 0.1 and model.cfg.emb_dim == 768 and model.cfg.vocab_size == 32128
  assert q("%TRAIN_STEPS") == 30000 and q("%BATCH_SIZE") == 32
  assert q("%TASK_FEATURE_LENGTHS") == {"inputs": 512, "targets": 8}
  assert q("%Z_LOSS") == 1e-4 and q("%EVAL_PERIOD") == 1000 and q("%CHECKPOINT_PERIOD") == 1000
  assert q("%LEARNING_RATE") == 0.3 and q("adafactor.decay_rate") == 0.8
  assert q("adafactor.weight_decay_rate") == 1e-5 and q("adafactor.factored") is False
  assert q("sampled_vocab.population_size") == 5000
  assert q("%NUM_MICROBATCHES") == 1 and q("%MESH_SHAPE") == (-1, 1)
  assert "class_labels" in prompt_init.__qualname__ and q("%CLASS_LABELS") == ["yes", "no"]
  assert decode_fn.__name__ == "greedy"
  assert optimizer is not None
  assert model.cfg.remat == "none" and model.cfg.attention == "xla" and q("%PACK") is False
  assert model.cfg.scan_layers is False


def test_memory_and_attention_settings_reach_the_model():
  model = _parse(["models/t5_1_1_xxl_prompt.gin"], ["REMAT='full'", "ATTENTION='fused'", "SCAN_LAYERS=True"])[0]
  assert model.cfg.remat == "full" and model.cfg.attention == "fused" and model.cfg.scan_layers


@pytest.mark.parametrize("size", sorted(t5.SIZES))
def test_model_sizes_match_t5_1_1(size):
  model = _parse([f"models/t5_1_1_{size}_prompt.gin"])[0]
  expected = t5.config_for(size)
  for field in ("emb_dim", "mlp_dim", "num_heads", "num_encoder_layers", "num_decoder_layers", "head_dim"):
    assert getattr(model.cfg, field) == getattr(expected, field), field


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(CONFIGS, "prompts", "*.gin"))
                                        + glob.glob(os.path.join(CONFIGS, "models", "decoding", "*.gin"))))
def test_prompt_and_decoding_files_parse_after_a_model(path):
  text = open(path).read()
  needed = [b for b in ("CLASS_LABELS=['a']", "PROMPT_FILE='/x.npy'", "PROMPT_INIT_TEXT='hi'")
            if "%" + b.split("=")[0] in text]
  _parse(["models/t5_1_1_small_prompt.gin", os.path.relpath(path, CONFIGS), "runs/prompt_finetune.gin"],
         REQUIRED + needed)


@pytest.mark.parametrize("run", ["quickstart", "quickstart_eval", "quickstart_infer"])
def test_quickstart_configs_parse(run):
  gin_utils.parse([f"runs/{run}.gin"])


def test_configs_found_from_any_working_directory(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert gin_utils.find_configs_dir() == CONFIGS
  gin_utils.parse(["configs/runs/quickstart.gin"])
  gin_utils.parse(["runs/quickstart.gin"], ["TRAIN_STEPS=7", "MODEL_DIR=/tmp/some dir"])
  assert q("%TRAIN_STEPS") == 7 and q("%MODEL_DIR") == "/tmp/some dir"


def test_bare_strings_in_bindings_are_quoted():
  assert gin_utils._as_binding("MODEL_DIR=/tmp/x") == "MODEL_DIR = '/tmp/x'"
  assert gin_utils._as_binding("TRAIN_STEPS=5") == "TRAIN_STEPS = 5"
  assert gin_utils._as_binding("X=@f()") == "X = @f()"
  assert gin_utils._as_binding("L=['a', 'b']") == "L = ['a', 'b']"


# ----------------------------------------------------------------------------- bindings that take effect


@pytest.mark.parametrize("binding, expected", [
    ("TRAIN_STEP=10", "--gin.TRAIN_STEP=10: no binding of the gin config uses the macro TRAIN_STEP "
                      "(did you mean TRAIN_STEPS or TRAINABLE?)"),
    ("MIXTURE_OR_TASK_MODULE=t5.data.mixtures", "uses the macro MIXTURE_OR_TASK_MODULE (did you mean "
                                                "MIXTURE_OR_TASK_NAME?)"),
    ("train.modl_dir='/tmp/x'", "--gin.train.modl_dir='/tmp/x': train has no parameter 'modl_dir' "
                                "(did you mean model_dir or model?)"),
    ("tran.model_dir='/tmp/x'", "no configurable named 'tran' (did you mean train?)"),
    ("prompt_tuning.runs.settings.DatasetConfig.batch_siz=3", "DatasetConfig has no parameter "
                                                              "'batch_siz' (did you mean batch_size?)"),
    ("DatasetConfig.batch_size=@nothing()", "No configurable matching reference '@nothing()'"),
])
def test_a_binding_without_effect_is_refused_with_the_closest_names(binding, expected):
  with pytest.raises(UsageError) as err:
    gin_utils.parse(["runs/quickstart.gin"], [binding])
  assert expected in str(err.value) and "\n" not in str(err.value)


def test_macros_count_as_used_only_when_referenced(tmp_path):
  gin_utils.parse(["runs/quickstart.gin"], ["PROMPT_LENGTH=7", "NOT_IN_FILES=1",
                                            "train.seed=%NOT_IN_FILES"])
  assert q("%NOT_IN_FILES") == 1 and q("%PROMPT_LENGTH") == 7
  # A file may define a macro nothing references; only a flag binding it is refused.
  (tmp_path / "extra.gin").write_text("include 'runs/quickstart.gin'\nUNREFERENCED = 3\n")
  gin_utils.parse([str(tmp_path / "extra.gin")], ["TRAIN_STEPS=3"])
  assert q("%UNREFERENCED") == 3 and q("%TRAIN_STEPS") == 3
  with pytest.raises(UsageError, match="uses the macro UNREFERENCED"):
    gin_utils.parse([str(tmp_path / "extra.gin")], ["UNREFERENCED=4"])
  with pytest.raises(UsageError, match="uses the macro CLASS_LABELS"):
    gin_utils.parse(["models/t5_1_1_small_prompt.gin", "prompts/from_random_uniform.gin"],
                    ["CLASS_LABELS=['a']"])


def test_a_macro_the_caller_reads_counts_as_used():
  gin_utils.parse(["models/t5_1_1_small_prompt.gin"], ["MIXTURE_OR_TASK_NAME=x"],
                  queried=["MIXTURE_OR_TASK_NAME"])
  assert q("%MIXTURE_OR_TASK_NAME") == "x"


def test_cli_refuses_an_unused_macro_in_one_line(capsys):
  from prompt_tuning.config import cli
  calls = []
  rc = cli.main(["--gin_file=runs/quickstart.gin", "--gin.TRAIN_STEP=10"], "prompt_tuning.train",
                "", calls.append)
  assert rc == 2 and not calls
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("prompt_tuning.train: error: --gin.TRAIN_STEP=10: ")
  assert "did you mean TRAIN_STEPS or TRAINABLE?" in err[0]


@pytest.mark.parametrize("command", [
    "scripts/show_task.py --list",
    "-m prompt_tuning.sweep --sweep_file=figure3a --root={root} --launcher=print",
])
def test_a_reader_that_stops_early_gets_no_traceback(command, tmp_path):
  """`... | head -1`: the command stops quietly when its reader closes the pipe."""
  import subprocess
  import sys
  command = command.format(root=tmp_path / "sweep")
  result = subprocess.run(f"{sys.executable} {command} | head -1", shell=True, cwd=runs_testlib.REPO,
                          capture_output=True, text=True, timeout=300)
  assert len(result.stdout.splitlines()) == 1
  assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr, result.stderr
