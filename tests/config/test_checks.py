"""Every setting has a checked type and range: a table of bad values, each refused in one line
(what, why, how to fix), and a table of good ones that pass; every macro of configs/ is covered."""
import glob
import os
import re
import subprocess

import gin
import pytest

from prompt_tuning.config import checks
from prompt_tuning.config import gin_config
from prompt_tuning.config.errors import UsageError
from tests.runs import runs_testlib

# setting -> (a bad value, words the message must hold)
BAD = {
    "MIXTURE_OR_TASK_NAME": ("", "is not a non-empty string"),
    "TASK_FEATURE_LENGTHS": ({"inputs": 512}, "has no 'targets' length"),
    "BATCH_SIZE": (0, "is below 1"),
    "NUM_MICROBATCHES": (1.5, "is not a whole number"),
    "LENGTH_BUCKETS": ((), "non-empty list of positive lengths"),
    "PACK": ("yes", "is not True or False"),
    "EVAL_SPLIT": (3, "is not a non-empty string"),
    "INFER_SPLIT": (" ", "is not a non-empty string"),
    "TRAIN_STEPS": (True, "is not a whole number"),
    "EVAL_PERIOD": (-5, "is below 1"),
    "CHECKPOINT_PERIOD": (0, "is below 1"),
    "LOG_PERIOD": ("100", "is not a whole number"),
    "KEEP_CHECKPOINTS": (0, "is below 1"),
    "EARLY_STOPPING_PATIENCE": (0, "is below 1"),
    "EVAL_MAX_EXAMPLES": (0, "is below 1"),
    "INFER_MAX_EXAMPLES": (2.0, "is not a whole number or None"),
    "EvaluationConfig.batch_size": (0, "is below 1"),
    "EVAL_SCORE_TASKS": ("squad", "is not a non-empty list of strings or None"),
    "PEFT_EXPORT": (None, "is not True or False"),
    "SCAN_LAYERS": ("no", "is not True or False"),
    "TRAINABLE": ([], "is not a non-empty list of strings"),
    "LOSS_NORMALIZING_FACTOR": (0, "is not above 0"),
    "SEED": (-1, "is below 0"),
    "INFER_MODE": ("decode", "is not one of 'predict', 'score'"),
    "OVERWRITE": (1, "is not True or False"),
    "MODEL": ("t5", "is not a prompted T5 model"),
    "PROMPT_LENGTH": (-1, "is below 0"),
    "VOCAB_SIZE": (0, "is below 1"),
    "T5Config.emb_dim": (0, "is below 1"),
    "T5Config.num_heads": (0, "is below 1"),
    "T5Config.head_dim": (0, "is below 1"),
    "T5Config.mlp_dim": (0, "is below 1"),
    "T5Config.num_encoder_layers": (0, "is below 1"),
    "T5Config.num_decoder_layers": (0, "is below 1"),
    "T5Config.relative_attention_num_buckets": (0, "is below 1"),
    "T5Config.relative_attention_max_distance": (0, "is below 1"),
    "DROPOUT_RATE": (1.0, "is outside [0, 1)"),
    "ACTIVATION_DTYPE": ("float64", "is not one of 'float32', 'bfloat16', 'float16'"),
    "FROZEN_DTYPE": ("int8", "is not one of"),
    "MESH_SHAPE": ((-1, -1), "at most one -1"),
    "INITIAL_CHECKPOINT_PATH": ("", "is not a non-empty string"),
    "Z_LOSS": (-1e-4, "is not at least 0"),
    "LEARNING_RATE": (0, "is not above 0"),
    "OPTIMIZER": ("adam", "is not an optax optimizer"),
    "adafactor.decay_rate": (float("nan"), "is not a finite number"),
    "adafactor.step_offset": (0.5, "is not a whole number"),
    "adafactor.clipping_threshold": (0.0, "is not above 0"),
    "adafactor.weight_decay_rate": (-1.0, "is not at least 0"),
    "adafactor.epsilon1": (0, "is not above 0"),
    "adafactor.multiply_by_parameter_scale": (1, "is not True or False"),
    "adafactor.min_dim_size_to_factor": (0, "is below 1"),
    "RESTORE_OPTIMIZER_STATE": ("yes", "is not True or False"),
    "PARAMETER_PARTITIONING_DIMS": (3, "is not one of 1, 2"),
    "CLASS_LABELS": ("positive", "is not a non-empty list of strings"),
    "PROMPT_INIT_TEXT": ("", "is not a non-empty string"),
    "random_uniform.scale": (0.0, "is not above 0"),
    "sampled_vocab.population_size": (0, "is below 1"),
    "PROMPT_INIT": ("random", "is not a function"),
    "DECODE_FN": ("greedy", "is not a function"),
    "beam_search.num_decodes": (0, "is below 1"),
    "beam_search.beam_size": (0, "is below 1"),
    "beam_search.alpha": (-0.6, "is not at least 0"),
    "sample.num_decodes": (0, "is below 1"),
    "sample.temperature": (float("inf"), "is not a finite number"),
    "sample.top_k": (-1, "is below 0"),
    "sample.top_p": (0.0, "is outside (0, 1]"),
    "NUM_TASKS": (0, "is below 1"),
    "MULTITASK_COMBINE": ("mul", "is not one of 'add', 'concat', 'project'"),
    "MULTITASK_TASK_LENGTH": (0, "is below 1"),
    "MULTITASK_TASK_SOURCE": ("first_token", "is not one of 'sentinel', 'prompt_ids'"),
    "REPARAM_FORM": ("lstm", "is not one of 'mlp', 'residual'"),
    "REPARAM_HIDDEN": (-1, "is below 0"),
    "REPARAM_ACTIVATION": ("swish", "is not one of 'tanh', 'relu', 'gelu'"),
    "WAYWARD_TEXT": ("", "is not a non-empty string"),
    "WAYWARD_GAMMA": (-0.01, "is not at least 0"),
    "RANK_LOSS": ("perceptron", "is not one of 'softmax', 'hinge'"),
    "RANK_MARGIN": (float("nan"), "is not a finite number"),
    "PER_LAYER_LAYERS": ([1, -1], "is not None or a list of layer numbers"),
    "PER_LAYER_MODE": ("prefix", "is not one of 'replace', 'add'"),
    "DECODER_PROMPT_LENGTH": (-1, "is below 0"),
}
MORE_BAD = [  # a second kind of bad value for the settings with structure
    ("TASK_FEATURE_LENGTHS", "512", "is not a dict"),
    ("TASK_FEATURE_LENGTHS", {"inputs": 512, "targets": 0}, "gives 'targets' the length 0"),
    ("MESH_SHAPE", (8,), "is not two whole numbers"),
    ("MESH_SHAPE", (0, 1), "needs positive sizes"),
    ("LENGTH_BUCKETS", (64, -1), "non-empty list of positive lengths"),
    ("CLASS_LABELS", [], "is not a non-empty list of strings"),
    ("CLASS_LABELS", ["yes", ""], "holds an empty or non-string label"),
    ("CLASS_LABELS", ["yes", "yes"], "repeats a label"),
    ("DROPOUT_RATE", -0.1, "is outside [0, 1)"),
    ("sample.top_p", 1.5, "is outside (0, 1]"),
    ("BATCH_SIZE", None, "is not a whole number"),
    ("MODEL", None, "is not a prompted T5 model"),
    ("TRAINABLE", ["encoder/(.*"], "holds 'encoder/(.*', not a regular expression"),
    ("PER_LAYER_LAYERS", [1, 1], "names a layer twice"),
    ("PER_LAYER_LAYERS", "1", "is not None or a list of layer numbers"),
]
GOOD = {
    "MIXTURE_OR_TASK_NAME": "taskless_super_glue_rte_v102", "TASK_FEATURE_LENGTHS": {"inputs": 512, "targets": 8},
    "BATCH_SIZE": 32, "NUM_MICROBATCHES": 4, "LENGTH_BUCKETS": (64, 128), "PACK": False,
    "EVAL_SPLIT": "validation", "INFER_SPLIT": "test", "TRAIN_STEPS": 30000, "EVAL_PERIOD": 1000,
    "CHECKPOINT_PERIOD": 1000, "LOG_PERIOD": 100, "KEEP_CHECKPOINTS": None, "EARLY_STOPPING_PATIENCE": None,
    "EVAL_MAX_EXAMPLES": 8, "INFER_MAX_EXAMPLES": None, "EvaluationConfig.batch_size": None, "SEED": 0,
    "EVAL_SCORE_TASKS": ["squad_v010_allanswers"], "PEFT_EXPORT": True, "SCAN_LAYERS": False,
    "TRAINABLE": ("prompt/.*", "encoder/layers_[0-3]/.*"),  "LOSS_NORMALIZING_FACTOR": None,
    "INFER_MODE": "score", "OVERWRITE": True, "MODEL": type("Model", (), {"cfg": None, "prompt_length": 4})(), "PROMPT_LENGTH": 0, "VOCAB_SIZE": 32128, "T5Config.emb_dim": 64,
    "T5Config.num_heads": 4, "T5Config.head_dim": 16, "T5Config.mlp_dim": 128, "T5Config.num_encoder_layers": 2,
    "T5Config.num_decoder_layers": 2, "T5Config.relative_attention_num_buckets": 32,
    "T5Config.relative_attention_max_distance": 128, "DROPOUT_RATE": 0.0, "ACTIVATION_DTYPE": "bfloat16",
    "FROZEN_DTYPE": None, "MESH_SHAPE": (-1, 1), "INITIAL_CHECKPOINT_PATH": None, "Z_LOSS": 0,
    "LEARNING_RATE": lambda step: 0.3, "OPTIMIZER": None, "adafactor.decay_rate": 0.8,
    "adafactor.step_offset": 0, "adafactor.clipping_threshold": None, "adafactor.weight_decay_rate": 1e-5,
    "adafactor.epsilon1": 1e-30, "adafactor.multiply_by_parameter_scale": True,
    "adafactor.min_dim_size_to_factor": 128, "RESTORE_OPTIMIZER_STATE": True,
    "PARAMETER_PARTITIONING_DIMS": 2, "CLASS_LABELS": ("entailment", "not_entailment"), "PROMPT_INIT_TEXT": "hi",
    "random_uniform.scale": 0.5, "sampled_vocab.population_size": 5000, "PROMPT_INIT": None,
    "DECODE_FN": len, "beam_search.num_decodes": 4, "beam_search.beam_size": None, "beam_search.alpha": 0,
    "sample.num_decodes": 1, "sample.temperature": 0.0, "sample.top_k": 0, "sample.top_p": 1.0,
    "NUM_TASKS": 8, "MULTITASK_COMBINE": "project", "MULTITASK_TASK_LENGTH": None,
    "MULTITASK_TASK_SOURCE": "prompt_ids", "REPARAM_FORM": "residual", "REPARAM_HIDDEN": 0,
    "REPARAM_ACTIVATION": "relu", "WAYWARD_TEXT": None, "WAYWARD_GAMMA": 0.01, "RANK_LOSS": None,
    "RANK_MARGIN": 0.2, "PER_LAYER_LAYERS": (0, 3), "PER_LAYER_MODE": "add", "DECODER_PROMPT_LENGTH": 0,
}
# Macros of configs/ checked by their own code: output folders, prompt files, the model's choices.
CHECKED_ELSEWHERE = {"MODEL_DIR", "EVAL_OUTPUT_DIR", "INFER_OUTPUT_DIR",  # checks.output_folder
                     "PROMPT_FILE",  # eval_infer._prompt_files, prompt_io.load_prompt
                     "PROMPT_PLACEMENT", "REMAT", "ATTENTION"}  # model.prompted.build (choose one of)


@pytest.fixture(autouse=True)
def _clean_gin():
  yield
  runs_testlib.clear_gin()


def test_the_tables_cover_every_setting():
  assert set(BAD) == set(checks.SETTINGS) == set(GOOD)


def test_every_macro_of_the_configs_is_checked():
  macros = set()
  for path in glob.glob(os.path.join(runs_testlib.REPO, "configs", "**", "*.gin"), recursive=True):
    macros |= set(re.findall(r"^([A-Z][A-Z0-9_]*)\s*=", open(path).read(), re.M))
  assert macros - CHECKED_ELSEWHERE - set(checks.SETTINGS) == set()


@pytest.mark.parametrize("name,value,words", [(n, v, w) for n, (v, w) in sorted(BAD.items())] + MORE_BAD)
def test_a_bad_value_is_one_line_saying_what_why_and_how(name, value, words):
  with pytest.raises(UsageError) as err:
    checks.check({name: value})
  message = str(err.value)
  assert message.startswith(f"{name} = {value!r} ") and words in message, message
  assert ": it is " in message and f"; set e.g. --gin.{name}=" in message and "\n" not in message


@pytest.mark.parametrize("name", sorted(GOOD))
def test_a_good_value_passes(name):
  checks.check({name: GOOD[name]})


def test_required_values_are_left_to_gin():
  checks.check({"BATCH_SIZE": gin.REQUIRED, "CLASS_LABELS": gin.REQUIRED})


def test_microbatches_divide_the_batch_and_prompt_length_zero_where_a_prompt_is_needed():
  checks.divides(32, 4)
  with pytest.raises(UsageError, match=r"NUM_MICROBATCHES = 3 does not divide BATCH_SIZE = 32.*NUM_MICROBATCHES=2"):
    checks.divides(32, 3)
  checks.prompt_length(0, None)
  with pytest.raises(UsageError, match="PROMPT_LENGTH = 0 leaves no prompt, but prompt tuning trains only"):
    checks.prompt_length(0, "prompt tuning trains only the prompt")


def test_decoding_settings_bound_in_gin_are_checked():
  gin_config.parse(["models/t5_1_1_small_prompt.gin", "models/decoding/beam_search.gin"],
                   ["beam_search.beam_size=2"])
  decode_fn = gin.query_parameter("%DECODE_FN").scoped_configurable_fn
  with pytest.raises(UsageError, match="beam_search.beam_size = 2 is below beam_search.num_decodes = 4"):
    checks.decoder(decode_fn)
  gin_config.parse(["models/t5_1_1_small_prompt.gin", "models/decoding/nucleus_sampling.gin"],
                   ["sample.top_p=0"])
  with pytest.raises(UsageError, match=r"sample.top_p = 0 is outside \(0, 1\]"):
    checks.decoder(gin.query_parameter("%DECODE_FN").scoped_configurable_fn)
  checks.decoder(None)


def test_output_folders(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  assert checks.output_folder("run", "MODEL_DIR") == str(tmp_path / "run")  # creatable: fine
  (tmp_path / "file").write_text("x")
  cases = [("", "is not a folder path: outputs would land in the working directory"),
           ("gs://bucket/run", "is not a local folder"),
           (str(tmp_path / "file"), "is a file, not a folder"),
           (str(tmp_path / "file" / "run"), f"lies under {tmp_path / 'file'}, which is a file")]
  for path, words in cases:
    with pytest.raises(UsageError, match=re.escape(words)):
      checks.output_folder(path, "MODEL_DIR")
  with pytest.raises(UsageError, match="MODEL_DIR is not set"):
    checks.output_folder(None, "MODEL_DIR")
  assert os.listdir(tmp_path) == ["file"]  # nothing was created


def _read_only_folder(tmp_path):
  """A folder this process cannot write: a read-only tmpfs as root (who ignores permissions),
  else mode 0555; None when neither can be made here."""
  folder = tmp_path / "ro"
  folder.mkdir()
  if os.geteuid() != 0:
    folder.chmod(0o555)
    return folder, lambda: folder.chmod(0o755)
  if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
                    capture_output=True).returncode != 0:
    return None, None
  return folder, lambda: subprocess.run(["umount", str(folder)], check=True)


def test_unwritable_output_folders_are_refused(tmp_path):
  folder, undo = _read_only_folder(tmp_path)
  if folder is None:
    pytest.skip("no way to make a read-only folder here")
  try:
    with pytest.raises(UsageError, match="MODEL_DIR .*/ro is not writable"):
      checks.output_folder(str(folder), "MODEL_DIR")
    with pytest.raises(UsageError, match="cannot be created: .*/ro is not writable"):
      checks.output_folder(str(folder / "run"), "MODEL_DIR")
  finally:
    undo()


def test_the_prompt_methods_choices_are_the_modules_own():
  """The table lists the choices the methods' modules implement (the config layer imports none)."""
  from prompt_tuning.model.extended import deep, multitask, reparam
  from prompt_tuning.training import rank_loss
  for macro, choices in (("MULTITASK_COMBINE", multitask.COMBINES), ("MULTITASK_TASK_SOURCE", multitask.TASK_SOURCES),
                         ("REPARAM_FORM", reparam.FORMS), ("REPARAM_ACTIVATION", reparam.ACTIVATIONS),
                         ("PER_LAYER_MODE", deep.MODES), ("RANK_LOSS", rank_loss.KINDS)):
    for choice in choices:
      checks.check({macro: choice})
    with pytest.raises(UsageError, match=", ".join(map(repr, choices)) + r":"):
      checks.check({macro: "none of them"})
