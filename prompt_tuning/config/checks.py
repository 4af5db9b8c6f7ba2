"""Every setting's type and range, checked before anything runs or is written.

`SETTINGS` maps each gin macro (and the few settings bound without one, by their gin name) to
its check; the runs, the setting records and the library's gin-bound functions call `check`
with the values they were given, so a bad value ends as one line, `<what>, <why>, <how to fix>`:

  TRAIN_STEPS = 0 is below 1: it is the number of training steps; set e.g. --gin.TRAIN_STEPS=30000

Folder checks (`output_folder`) look at the file system too: a URL, an empty string (which would
mean the working directory), a file, or a folder that cannot be written is refused up front.
"""
from __future__ import annotations

import inspect
import math
import os
import re
from typing import Any, Callable, Mapping, Optional, Sequence

import gin

from prompt_tuning.config.errors import UsageError

DTYPES = ("float32", "bfloat16", "float16")


def require(value, macro: str, example: str):
  """`value`, refused when it was never set (None or gin.REQUIRED)."""
  if value is None or value is gin.REQUIRED:
    raise UsageError(f"{macro} is not set: add --gin.{macro}={example} or bind it in a gin file")
  return value


def local_folder(path: str, macro: str) -> str:
  """`path`, refused in one line when it is a URL: outputs are written with local file
  operations (atomic renames), which object stores such as gs:// do not offer."""
  if "://" in str(path):
    raise UsageError(f"{macro} {path!r} is not a local folder: outputs are written with local file "
                     "operations; use a local or shared folder (e.g. the bucket mounted with gcsfuse)")
  return path


def output_folder(path, macro: str, example: str = "/tmp/my_run") -> str:
  """The absolute path of a folder a run will write, refused unless it is a non-empty local path
  that is (or can be created as) a writable folder."""
  require(path, macro, example)
  if not isinstance(path, str) or not path.strip():
    raise UsageError(f"{macro} = {path!r} is not a folder path: outputs would land in the working "
                     f"directory; set e.g. --gin.{macro}={example}")
  local_folder(path, macro)
  path = os.path.abspath(os.path.expanduser(path))
  existing = path
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    where = "is a file" if existing == path else f"lies under {existing}, which is a file"
    raise UsageError(f"{macro} {path} {where}, not a folder: outputs need a folder; choose another "
                     f"path, e.g. --gin.{macro}={example}")
  if not os.access(existing, os.W_OK | os.X_OK):
    what = "is not writable" if existing == path else f"cannot be created: {existing} is not writable"
    raise UsageError(f"{macro} {path} {what}: outputs are written there; fix its permissions or "
                     f"choose a writable folder, e.g. --gin.{macro}={example}")
  return path


# ----------------------------------------------------------------------------- kinds of settings


def _refuse(macro: str, value, problem: str, why: str, example: str):
  raise UsageError(f"{macro} = {value!r} {problem}: it is {why}; set e.g. --gin.{macro}={example}")


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def whole(minimum: Optional[int], why: str, example: str, optional: bool = False) -> Callable:
  """An integer >= minimum (any integer for None; None allowed when optional)."""
  def check(macro, value):
    if value is None and optional:
      return
    if not _is_int(value):
      _refuse(macro, value, "is not a whole number" + (" or None" if optional else ""), why, example)
    if minimum is not None and value < minimum:
      _refuse(macro, value, f"is below {minimum}", why, example)
  return check


def number(why: str, example: str, minimum: float = 0.0, maximum: float = math.inf,
           above_minimum: bool = False, below_maximum: bool = False, optional: bool = False,
           schedule: bool = False) -> Callable:
  """A finite number in [minimum, maximum] (ends excluded as asked); a callable where
  `schedule` (an optax schedule of the step)."""
  def check(macro, value):
    if (value is None and optional) or (schedule and callable(value)):
      return
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
      _refuse(macro, value, "is not a finite number", why, example)
    low = value <= minimum if above_minimum else value < minimum
    high = value >= maximum if below_maximum else value > maximum
    if low and maximum == math.inf:
      _refuse(macro, value, f"is not {'above' if above_minimum else 'at least'} {minimum:g}", why, example)
    if low or high:
      span = ("(" if above_minimum else "[") + f"{minimum:g}, {maximum:g}" + (")" if below_maximum else "]")
      _refuse(macro, value, f"is outside {span}", why, example)
  return check


def one_of(choices: Sequence, why: str, optional: bool = False) -> Callable:
  def check(macro, value):
    if (value is None and optional) or value in choices:
      return
    _refuse(macro, value, f"is not one of {', '.join(map(repr, choices))}", why, repr(choices[0]))
  return check


def text(why: str, example: str, optional: bool = False) -> Callable:
  """A non-empty string."""
  def check(macro, value):
    if value is None and optional:
      return
    if not isinstance(value, str) or not value.strip():
      _refuse(macro, value, "is not a non-empty string", why, example)
  return check


def flag(why: str) -> Callable:
  def check(macro, value):
    if not isinstance(value, bool):
      _refuse(macro, value, "is not True or False", why, "True")
  return check


def _feature_lengths(macro, value):
  why, example = "the token lengths of inputs and targets", "\"{'inputs': 512, 'targets': 8}\""
  if not isinstance(value, Mapping):
    _refuse(macro, value, "is not a dict", why, example)
  for key in ("inputs", "targets"):
    if key not in value:
      _refuse(macro, value, f"has no {key!r} length", why, example)
    if not _is_int(value[key]) or value[key] < 1:
      _refuse(macro, value, f"gives {key!r} the length {value[key]!r}, not a positive whole number", why, example)


def _mesh_shape(macro, value):
  why, example = "the (data, model) device mesh, -1 for 'all the other devices'", "'(-1, 1)'"
  if not isinstance(value, (tuple, list)) or len(value) != 2 or not all(_is_int(v) for v in value):
    _refuse(macro, value, "is not two whole numbers (data, model)", why, example)
  if any(v == 0 or v < -1 for v in value) or list(value).count(-1) > 1:
    _refuse(macro, value, "needs positive sizes (at most one -1)", why, example)


def _length_buckets(macro, value):
  why, example = "the input lengths each training batch is cut to", "'(64, 128, 256, 512)'"
  if value is None:
    return
  if not isinstance(value, (tuple, list)) or not value or not all(_is_int(v) and v > 0 for v in value):
    _refuse(macro, value, "is not None or a non-empty list of positive lengths", why, example)


def _labels(macro, value):
  why, example = "the label strings the prompt starts from", "\"['entailment', 'not_entailment']\""
  if isinstance(value, str) or not isinstance(value, (tuple, list)) or not value:
    _refuse(macro, value, "is not a non-empty list of strings", why, example)
  if not all(isinstance(v, str) and v.strip() for v in value):
    _refuse(macro, value, "holds an empty or non-string label", why, example)
  if len(set(value)) != len(value):
    _refuse(macro, value, "repeats a label", why, example)


def _having(attributes: Sequence[str], what: str, why: str, example: str, optional: bool = False) -> Callable:
  """An object of the kind gin files build (e.g. a model, an optimizer), told by its attributes."""
  def check(macro, value):
    if not (value is None and optional) and not all(hasattr(value, a) for a in attributes):
      _refuse(macro, value, f"is not {what}", why, example)
  return check


def _names(why: str, example: str, optional: bool = False, patterns: bool = False) -> Callable:
  """A non-empty list of non-empty strings (regular expressions where `patterns`, which may
  also be one string)."""
  def check(macro, value):
    if value is None and optional:
      return
    if patterns and isinstance(value, str):
      value = [value]
    if isinstance(value, str) or not isinstance(value, (tuple, list)) or not value or \
        not all(isinstance(v, str) and v for v in value):
      _refuse(macro, value, "is not a non-empty list of strings" + (" or None" if optional else ""), why, example)
    for v in value if patterns else ():
      try:
        re.compile(v)
      except re.error as err:
        _refuse(macro, value, f"holds {v!r}, not a regular expression ({err})", why, example)
  return check


def _layer_indices(macro, value):
  why, example = "the encoder layers with a prompt of their own (None: all but the first)", "'[1, 2]'"
  if value is None:
    return
  if isinstance(value, str) or not isinstance(value, (tuple, list)) or \
      not all(_is_int(v) and v >= 0 for v in value):
    _refuse(macro, value, "is not None or a list of layer numbers (0, 1, ...)", why, example)
  if len(set(value)) != len(value):
    _refuse(macro, value, "names a layer twice", why, example)


def _function(why: str, example: str, optional: bool = False) -> Callable:
  def check(macro, value):
    if not (callable(value) or (value is None and optional)):
      _refuse(macro, value, "is not a function (a gin reference @...)", why, example)
  return check


_STEP = "a count of training steps"
SETTINGS: dict[str, Callable[[str, Any], None]] = {
    # what is trained on
    "MIXTURE_OR_TASK_NAME": text("a registered seqio task or mixture", "taskless_super_glue_rte_v102"),
    "TASK_FEATURE_LENGTHS": _feature_lengths,
    "BATCH_SIZE": whole(1, "the global batch (examples per step)", "32"),
    "NUM_MICROBATCHES": whole(1, "how many parts a batch is processed in", "1"),
    "LENGTH_BUCKETS": _length_buckets,
    "PACK": flag("whether several examples share a row"),
    "EVAL_SPLIT": text("the split evaluated on", "validation"),
    "INFER_SPLIT": text("the split inferred on", "validation"),
    # how long, how often
    "TRAIN_STEPS": whole(1, "the number of training steps", "30000"),
    "EVAL_PERIOD": whole(1, _STEP + " between evaluations", "1000"),
    "CHECKPOINT_PERIOD": whole(1, _STEP + " between checkpoints", "1000"),
    "LOG_PERIOD": whole(1, _STEP + " between train-metric lines", "100"),
    "KEEP_CHECKPOINTS": whole(1, "how many best checkpoints are kept with the latest (None: all)", "1",
                              optional=True),
    "EARLY_STOPPING_PATIENCE": whole(1, "evaluations without gain before stopping", "None", optional=True),
    "EVAL_MAX_EXAMPLES": whole(1, "how many examples are evaluated (None: all)", "None", optional=True),
    "INFER_MAX_EXAMPLES": whole(1, "how many examples are inferred (None: all)", "None", optional=True),
    "EvaluationConfig.batch_size": whole(1, "the evaluation batch (None: BATCH_SIZE)", "None", optional=True),
    "EVAL_SCORE_TASKS": _names("the tasks whose mean metric picks the best evaluation (None: those trained on)",
                               "\"['squad_v010_allanswers']\"", optional=True),
    "PEFT_EXPORT": flag("whether each checkpoint's prompt is also written as a PEFT adapter"),
    "SEED": whole(0, "the seed of the prompt's initialization, data order and dropout", "0"),
    "INFER_MODE": one_of(("predict", "score"), "what inference writes"),
    "OVERWRITE": flag("whether an earlier run in MODEL_DIR is moved aside"),
    # the model and its numerics
    "MODEL": _having(("cfg", "prompt_length"), "a prompted T5 model", "the model models/*.gin builds",
                     "@prompt_tuning.model.prompted.build()"),
    "PROMPT_LENGTH": whole(0, "the number of prompt tokens", "100"),
    "VOCAB_SIZE": whole(1, "the model's vocabulary size", "32128"),
    "SCAN_LAYERS": flag("whether each stack's layers run as one scan"),
    "TRAINABLE": _names("the regular expressions of the parameters that train", "\"['prompt/.*']\"",
                        patterns=True),
    "LOSS_NORMALIZING_FACTOR": number("what the summed loss is divided by (None: nothing)", "None",
                                      above_minimum=True, optional=True),
    "T5Config.emb_dim": whole(1, "the model width (d_model)", "768"),
    "T5Config.num_heads": whole(1, "the attention heads per layer", "12"),
    "T5Config.head_dim": whole(1, "the width of one attention head", "64"),
    "T5Config.mlp_dim": whole(1, "the MLP width", "2048"),
    "T5Config.num_encoder_layers": whole(1, "the encoder depth", "12"),
    "T5Config.num_decoder_layers": whole(1, "the decoder depth", "12"),
    "T5Config.relative_attention_num_buckets": whole(1, "the relative-position buckets", "32"),
    "T5Config.relative_attention_max_distance": whole(1, "the largest relative distance", "128"),
    "DROPOUT_RATE": number("the dropout probability", "0.1", below_maximum=True, maximum=1.0),
    "ACTIVATION_DTYPE": one_of(DTYPES, "the compute dtype"),
    "FROZEN_DTYPE": one_of(DTYPES, "the storage dtype of the frozen weights", optional=True),
    "MESH_SHAPE": _mesh_shape,
    "PARAMETER_PARTITIONING_DIMS": one_of((1, 2), "how many mesh axes split each weight (2: also `embed` "
                                          "over `data`, FSDP-style)"),
    "INITIAL_CHECKPOINT_PATH": text("the frozen checkpoint (None: random, for tests)",
                                    "gs://t5-data/pretrained_models/t5x/t5_1_1_lm100k_base/checkpoint_1100000",
                                    optional=True),
    # the loss and the optimizer
    "Z_LOSS": number("the z-loss coefficient", "1e-4"),
    "LEARNING_RATE": number("the learning rate (or an optax schedule)", "0.3", above_minimum=True, schedule=True),
    "OPTIMIZER": _having(("init", "update"), "an optax optimizer", "the optimizer (None: the paper's Adafactor)",
                         "@prompt_tuning.training.optim.adafactor()", optional=True),
    "adafactor.decay_rate": number("Adafactor's second-moment decay exponent", "0.8", above_minimum=True),
    "adafactor.step_offset": whole(None, "the step Adafactor's decay counts from", "0"),
    "adafactor.clipping_threshold": number("the update clipping threshold (None: none)", "1.0",
                                           above_minimum=True, optional=True),
    "adafactor.weight_decay_rate": number("the weight decay (None: none)", "1e-5", optional=True),
    "adafactor.epsilon1": number("Adafactor's epsilon", "1e-30", above_minimum=True),
    "adafactor.multiply_by_parameter_scale": flag("whether updates are scaled by the parameter's RMS"),
    "adafactor.min_dim_size_to_factor": whole(1, "the size both dimensions of a factored matrix reach", "128"),
    "RESTORE_OPTIMIZER_STATE": flag("whether the checkpoint's Adafactor state and step are restored too"),
    # the prompt's initialization
    "CLASS_LABELS": _labels,
    "PROMPT_INIT_TEXT": text("the text the prompt starts from", "'classify the review'"),
    "random_uniform.scale": number("the half-width of the uniform initialization", "0.5", above_minimum=True),
    "sampled_vocab.population_size": whole(1, "how many of the most frequent ids are sampled", "5000"),
    "PROMPT_INIT": _function("the prompt initializer", "@prompt_tuning.model.prompts.random_uniform()",
                             optional=True),
    # the prompt methods (configs/extended/*.gin)
    "NUM_TASKS": whole(1, "the number of task prompts of a multi-task prompt", "8"),
    "MULTITASK_COMBINE": one_of(("add", "concat", "project"),
                                "how a multi-task prompt combines its shared and per-task parts"),
    "MULTITASK_TASK_LENGTH": whole(1, "a concatenated multi-task prompt's per-task positions (None: half)",
                                   "None", optional=True),
    "MULTITASK_TASK_SOURCE": one_of(("sentinel", "prompt_ids"), "where a multi-task prompt reads the task"),
    "REPARAM_FORM": one_of(("mlp", "residual"), "how the prompt is reparameterized"),
    "REPARAM_HIDDEN": whole(0, "the hidden units of the reparameterization MLP (0: d_model)", "0"),
    "REPARAM_ACTIVATION": one_of(("tanh", "relu", "gelu"), "the activation of the reparameterization MLP"),
    "WAYWARD_TEXT": text("the task description a wayward prompt is pulled towards (None: none)",
                         "'classify the review'", optional=True),
    "WAYWARD_GAMMA": number("the weight of the wayward distance", "0.01"),
    "RANK_LOSS": one_of(("softmax", "hinge"), "the rank-classification loss (None: the token loss)",
                        optional=True),
    "RANK_MARGIN": number("the margin of the rank hinge loss", "0.2"),
    "PER_LAYER_LAYERS": _layer_indices,
    "PER_LAYER_MODE": one_of(("replace", "add"), "how a layer's prompt meets the layer's input"),
    "DECODER_PROMPT_LENGTH": whole(0, "the number of decoder prompt tokens", "10"),
    # decoding (models/decoding/*.gin)
    "DECODE_FN": _function("the decoding function", "@prompt_tuning.model.decoding.greedy", optional=True),
    "beam_search.num_decodes": whole(1, "the beams returned", "4"),
    "beam_search.beam_size": whole(1, "the live beams (None: num_decodes)", "None", optional=True),
    "beam_search.alpha": number("the length-penalty exponent", "0.6"),
    "sample.num_decodes": whole(1, "the samples drawn per example", "1"),
    "sample.temperature": number("the sampling temperature (0: greedy)", "1.0"),
    "sample.top_k": whole(0, "the top-k cut (0: none)", "0"),
    "sample.top_p": number("the nucleus mass", "0.9", above_minimum=True, maximum=1.0),
}


def check(values: Mapping[str, Any]) -> None:
  """Checks each `{setting name: value}` against SETTINGS (gin.REQUIRED values are gin's to report)."""
  for name, value in values.items():
    if value is not gin.REQUIRED:
      SETTINGS[name](name, value)


def divides(batch_size: int, parts: int) -> None:
  if batch_size % parts:
    raise UsageError(f"NUM_MICROBATCHES = {parts} does not divide BATCH_SIZE = {batch_size}: each "
                     "microbatch must hold as many examples; choose a divisor, e.g. "
                     f"--gin.NUM_MICROBATCHES={max(d for d in range(1, parts + 1) if batch_size % d == 0)}")


def prompt_length(value: int, needed_for: Optional[str]) -> None:
  """PROMPT_LENGTH as a whole number >= 0; 0 is refused where a prompt is `needed_for` something."""
  check({"PROMPT_LENGTH": value})
  if value == 0 and needed_for:
    raise UsageError(f"PROMPT_LENGTH = 0 leaves no prompt, but {needed_for}; set the prompt's length, "
                     "e.g. --gin.PROMPT_LENGTH=100 (the paper's)")


def decoder(decode_fn: Optional[Callable]) -> None:
  """DECODE_FN and the settings gin binds to it (beam_search.num_decodes, sample.top_p, ...)."""
  check({"DECODE_FN": decode_fn})
  if decode_fn is None:
    return
  name = getattr(decode_fn, "__name__", "")
  try:
    settings = {p.name: p.default for p in inspect.signature(decode_fn).parameters.values()
                if p.default is not inspect.Parameter.empty}
    settings.update(gin.get_bindings(decode_fn))
  except (TypeError, ValueError):  # not a gin configurable: only its own defaults apply
    pass
  else:
    check({f"{name}.{k}": v for k, v in settings.items() if f"{name}.{k}" in SETTINGS})
    if name == "beam_search" and settings.get("beam_size") is not None and \
        settings["beam_size"] < settings.get("num_decodes", 1):
      raise UsageError(f"beam_search.beam_size = {settings['beam_size']} is below beam_search.num_decodes = "
                       f"{settings['num_decodes']}: each returned beam must be live; raise beam_size or "
                       "leave it None")
