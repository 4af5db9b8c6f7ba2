"""The gin tree: every file parses, and the defaults are the paper's setup (§3)."""
import glob
import os

import gin
import pytest

from prompt_tuning.config import gin_config as gin_utils
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


def test_memory_and_attention_settings_reach_the_model():
  model = _parse(["models/t5_1_1_xxl_prompt.gin"], REQUIRED + ["REMAT='full'", "ATTENTION='fused'"])[0]
  assert model.cfg.remat == "full" and model.cfg.attention == "fused"


@pytest.mark.parametrize("size", sorted(t5.SIZES))
def test_model_sizes_match_t5_1_1(size):
  model = _parse([f"models/t5_1_1_{size}_prompt.gin"], REQUIRED)[0]
  expected = t5.config_for(size)
  for field in ("emb_dim", "mlp_dim", "num_heads", "num_encoder_layers", "num_decoder_layers", "head_dim"):
    assert getattr(model.cfg, field) == getattr(expected, field), field


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(CONFIGS, "prompts", "*.gin"))
                                        + glob.glob(os.path.join(CONFIGS, "models", "decoding", "*.gin"))))
def test_prompt_and_decoding_files_parse_after_a_model(path):
  _parse(["models/t5_1_1_small_prompt.gin", os.path.relpath(path, CONFIGS), "runs/prompt_finetune.gin"],
         REQUIRED + ["CLASS_LABELS=['a']", "PROMPT_FILE='/x.npy'", "PROMPT_INIT_TEXT='hi'"])


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
