"""The model-tuning gin files: the paper's baseline recipe reaches the train loop's settings."""
import jax.numpy as jnp
import pytest

from prompt_tuning.config import gin_config as gin_utils
from prompt_tuning.config.errors import UsageError
from prompt_tuning.runs import settings
from tests.config.test_configs import REQUIRED
from tests.config.test_configs import _parse
from tests.config.test_configs import q
from tests.runs import runs_testlib


@pytest.fixture(autouse=True)
def _clean_gin():
  yield
  runs_testlib.clear_gin()


def test_model_finetune_is_the_papers_model_tuning_recipe():
  model, optimizer, _, _ = _parse(["models/t5_1_1_base_prompt.gin", "runs/model_finetune.gin"], REQUIRED)
  assert model.prompt_length == 0 and model.cfg.dropout_rate == 0.1 and model.cfg.emb_dim == 768
  tuning = settings.TuningConfig()
  assert tuning.trainable == [".*"] and tuning.loss_normalizing_factor is None
  assert settings.RestoreCheckpointConfig().optimizer_state is True
  assert q("%LEARNING_RATE") == 0.001 and q("adafactor.factored") is True
  assert q("adafactor.weight_decay_rate") is None and q("adafactor.multiply_by_parameter_scale") is False
  assert q("adafactor.decay_rate") == 0.8 and q("adafactor.clipping_threshold") == 1.0
  assert q("%BATCH_SIZE") * q("%TASK_FEATURE_LENGTHS")["inputs"] == 2 ** 16 and q("%PACK") is True
  assert q("%Z_LOSS") == 1e-4
  state = optimizer.init({"kernel": jnp.zeros((768, 2048)), "scale": jnp.zeros((768,))})[0]
  assert state.v_row["kernel"].shape == (768,) and state.v["kernel"].shape == (1,)  # factored
  assert state.v["scale"].shape == (768,)


def test_a_constant_loss_normalizing_factor_and_partial_tuning_are_bindings():
  _parse(["models/t5_1_1_small_prompt.gin", "runs/model_finetune.gin"],
         REQUIRED + ["LOSS_NORMALIZING_FACTOR=233472", "TRAINABLE=['encoder/.*']"])
  tuning = settings.TuningConfig()
  assert tuning.loss_normalizing_factor == 233472 and tuning.trainable == ["encoder/.*"]


def test_multitask_model_finetune_is_the_superglue_mixture_with_dpr_in_2_20_token_batches():
  _parse(["models/t5_1_1_large_prompt.gin", "runs/multitask_model_finetune.gin"],
         ["MODEL_DIR='/tmp/x'", "INITIAL_CHECKPOINT_PATH=None"])
  assert q("%MIXTURE_OR_TASK_NAME") == "super_glue_v102_proportional"
  assert q("%BATCH_SIZE") * q("%TASK_FEATURE_LENGTHS")["inputs"] == 2 ** 20
  assert q("%BATCH_SIZE") // q("%NUM_MICROBATCHES") == 128
  from prompt_tuning.data import pipeline
  names = sorted(t.name for t in pipeline.leaf_tasks(q("%MIXTURE_OR_TASK_NAME"), "train"))
  assert "dpr_v001_simple" in names and "super_glue_rte_v102" in names


def test_the_quickstart_model_tuning_config_parses():
  gin_utils.parse(["runs/quickstart_model.gin"])
  assert q("%TRAINABLE") == [".*"] and q("%PROMPT_LENGTH") == 0 and q("%RESTORE_OPTIMIZER_STATE") is False


def test_an_unknown_trainable_macro_spelling_is_refused():
  with pytest.raises(UsageError, match="TRAINABLES"):
    gin_utils.parse(["runs/quickstart_model.gin"], ["TRAINABLES=['.*']"])
