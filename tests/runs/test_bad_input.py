"""Bad input through the command lines, one case per kind: each ends with exit status 2 and
exactly one line on stderr, `prompt_tuning.<entry>: error: ...`, no traceback, and its output
folder (MODEL_DIR, EVAL_OUTPUT_DIR, INFER_OUTPUT_DIR) absent or exactly as it was.

Most cases call the entry points' `main(argv)` in this process (one start-up for all); the
SUBPROCESS ones run `python -m prompt_tuning.<entry>` to see the real stderr of a fresh process.
"""
import dataclasses
import os
import shutil
from typing import Callable

import numpy as np
import pytest

from prompt_tuning import eval as eval_main
from prompt_tuning import infer as infer_main
from prompt_tuning import train as train_main
from prompt_tuning.data import quickstart
from prompt_tuning.runs import run_folder
from tests.runs import runs_testlib
from tests.runs.runs_testlib import TINY

MAINS = {"train": train_main.main, "eval": eval_main.main, "infer": infer_main.main}
TRAIN = TINY + ["--gin.BATCH_SIZE=8"]
EVAL = ["--gin_file=runs/quickstart_eval.gin", "--gin.PROMPT_LENGTH=4", "--gin.EVAL_MAX_EXAMPLES=8"]
INFER = ["--gin_file=runs/quickstart_infer.gin", "--gin.PROMPT_LENGTH=4", "--gin.INFER_MAX_EXAMPLES=8"]
TASK = quickstart.TASK_NAME
KERNEL = "target.encoder.layers_0.attention.key.kernel"


class Setup:
  """One case's files in its own folder; `out` is the output folder the case must leave alone."""

  def __init__(self, tmp_path, finished):
    self.tmp, self.out, self._finished, self.cleanups = tmp_path, tmp_path / "out", finished, []

  def file(self, name, content="text"):
    path = self.tmp / name
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    return str(path)

  def prompt(self, name="prompt.npy", value=None):
    path = self.tmp / name
    np.save(path, np.zeros((4, 64), np.float32) if value is None else value, allow_pickle=True)
    return str(path)

  def run(self):
    """`out` holds a finished 4-step run (PROMPT_LENGTH 4)."""
    shutil.copytree(self._finished, self.out)
    return str(self.out)

  def checkpoint(self, damage):
    copy = self.tmp / "ckpt"
    shutil.copytree(quickstart.checkpoint(), copy)
    damage(copy)
    return f"--gin.INITIAL_CHECKPOINT_PATH={copy}"


@dataclasses.dataclass
class Case:
  entry: str
  args: Callable  # Setup -> the flags after the entry's usual ones
  words: str  # what the error line says
  base: bool = True  # start from the entry's usual flags (quickstart, tiny, output folder set)
  subprocess: bool = False


def flags(*items):
  return lambda s: list(items)


def _held(s):
  s.run()
  s.cleanups.append(run_folder.Claim(str(s.out)).release)
  return []


def _cut(path, keep=0.5):
  data = open(path, "rb").read()
  open(path, "wb").write(data[:int(len(data) * keep)])


def _foreign(s):
  s.out.mkdir()
  (s.out / "notes.txt").write_text("mine")
  return []


def _no_state_data(s):
  s.run()
  for root, _, files in os.walk(s.out / "checkpoint_4" / "state" / "d"):
    for name in files:
      os.remove(os.path.join(root, name))
  return []


def _local_task(s, content):
  path = s.file("train.tsv", content) if content is not None else str(s.tmp / "missing.tsv")
  return ["--gin.MIXTURE_OR_TASK_NAME=@prompt_tuning.data.local_task()",
          "--gin.prompt_tuning.data.local_task.name='my_task'",
          f"--gin.prompt_tuning.data.local_task.paths={{'train': '{path}', 'validation': '{path}'}}"]


CASES = {
    # the command line
    "no gin file": Case("train", flags(), "no --gin_file given", base=False),
    "gin file not found": Case("train", flags("--gin_file=runs/no_such.gin"), "gin file 'runs/no_such.gin' not found",
                               base=False),
    "unknown flag": Case("train", flags("--gin_flie=runs/quickstart.gin"), "unrecognized argument '--gin_flie",
                         subprocess=True),
    "flag value of the wrong type": Case("train", flags("--process_count=two"), "argument --process_count: invalid int"),
    "binding without a value": Case("train", flags("--gin.TRAIN_STEPS"), "expected --gin.NAME=VALUE"),
    "misspelt macro": Case("train", flags("--gin.TRAIN_STEP=5"), "did you mean TRAIN_STEPS"),
    "unknown parameter": Case("train", flags("--gin.train.no_such_argument=3"), "no parameter 'no_such_argument'"),
    "multi-host flags not all given": Case("train", flags("--coordinator_address=localhost:1234"), "go together"),
    "process index out of range": Case("train", flags("--coordinator_address=localhost:1234", "--process_count=2",
                                                      "--process_index=2"), "--process_index 2 is not in [0, "),
    # settings: type and range
    "steps not a number": Case("train", flags("--gin.TRAIN_STEPS=many"), "TRAIN_STEPS = 'many' is not a whole number"),
    "zero steps": Case("train", flags("--gin.TRAIN_STEPS=0"), "TRAIN_STEPS = 0 is below 1"),
    "zero batch": Case("train", flags("--gin.BATCH_SIZE=0"), "BATCH_SIZE = 0 is below 1"),
    "microbatches not dividing the batch": Case("train", flags("--gin.NUM_MICROBATCHES=3"),
                                                "NUM_MICROBATCHES = 3 does not divide BATCH_SIZE = 8"),
    "zero log period": Case("train", flags("--gin.LOG_PERIOD=0"), "LOG_PERIOD = 0 is below 1"),
    "negative eval period": Case("train", flags("--gin.EVAL_PERIOD=-1"), "EVAL_PERIOD = -1 is below 1"),
    "zero checkpoint period": Case("train", flags("--gin.CHECKPOINT_PERIOD=0"), "CHECKPOINT_PERIOD = 0 is below 1"),
    "no checkpoint kept": Case("train", flags("--gin.KEEP_CHECKPOINTS=0"), "KEEP_CHECKPOINTS = 0 is below 1"),
    "zero patience": Case("train", flags("--gin.EARLY_STOPPING_PATIENCE=0"), "EARLY_STOPPING_PATIENCE = 0 is below 1"),
    "zero eval examples": Case("train", flags("--gin.EVAL_MAX_EXAMPLES=0"), "EVAL_MAX_EXAMPLES = 0 is below 1"),
    "negative seed": Case("train", flags("--gin.SEED=-1"), "SEED = -1 is below 0"),
    "negative z-loss": Case("train", flags("--gin.Z_LOSS=-1"), "Z_LOSS = -1 is not at least 0"),
    "zero learning rate": Case("train", flags("--gin.LEARNING_RATE=0"), "LEARNING_RATE = 0 is not above 0"),
    "dropout above 1": Case("train", flags("--gin.DROPOUT_RATE=1.5"), "DROPOUT_RATE = 1.5 is outside [0, 1)"),
    "unknown frozen dtype": Case("train", flags("--gin.FROZEN_DTYPE=float8"), "FROZEN_DTYPE = 'float8' is not one of"),
    "unknown compute dtype": Case("train", flags("--gin.ACTIVATION_DTYPE=int8"), "ACTIVATION_DTYPE = 'int8' is not one of"),
    "mesh of one axis": Case("train", flags("--gin.MESH_SHAPE=(8,)"), "MESH_SHAPE = (8,) is not two whole numbers"),
    "mesh of another device count": Case("train", flags("--gin.MESH_SHAPE=(3, 1)"), "needs 3 devices but 8 are available"),
    "feature length missing": Case("train", flags("--gin.TASK_FEATURE_LENGTHS={'inputs': 24}"), "has no 'targets' length"),
    "feature length zero": Case("train", flags("--gin.TASK_FEATURE_LENGTHS={'inputs': 24, 'targets': 0}"),
                                "gives 'targets' the length 0"),
    "no prompt to tune": Case("train", flags("--gin.PROMPT_LENGTH=0"), "PROMPT_LENGTH = 0 leaves no prompt, but TRAINABLE"),
    "negative prompt length": Case("train", flags("--gin.PROMPT_LENGTH=-1"), "PROMPT_LENGTH = -1 is below 0"),
    "no class labels": Case("train", flags("--gin.CLASS_LABELS=[]"), "CLASS_LABELS = [] is not a non-empty list"),
    "class labels as one string": Case("train", flags("--gin.CLASS_LABELS=positive"),
                                       "CLASS_LABELS = 'positive' is not a non-empty list"),
    "unknown prompt placement": Case("train", flags("--gin.PROMPT_PLACEMENT=middle"), "unknown prompt placement 'middle'"),
    "unknown remat": Case("train", flags("--gin.REMAT=some"), "unknown remat 'some'"),
    "unknown attention": Case("train", flags("--gin.ATTENTION=flash"), "unknown attention 'flash'"),
    "empty length buckets": Case("train", flags("--gin.LENGTH_BUCKETS=()"), "LENGTH_BUCKETS = () is not None or a non-empty"),
    "pack not a flag": Case("train", flags("--gin.PACK=yes"), "PACK = 'yes' is not True or False"),
    "packing with a suffix prompt": Case("train", flags("--gin.PACK=True", "--gin.PROMPT_PLACEMENT=suffix"),
                                         "PACK = True needs the prefix placement"),
    "no beams": Case("train", flags("--gin_file=models/decoding/beam_search.gin", "--gin.beam_search.num_decodes=0"),
                     "beam_search.num_decodes = 0 is below 1"),
    "empty nucleus": Case("train", flags("--gin_file=models/decoding/nucleus_sampling.gin", "--gin.sample.top_p=0"),
                          "sample.top_p = 0 is outside (0, 1]"),
    "trainable not a regex": Case("train", flags("--gin.TRAINABLE=['prompt/(']"), "not a regular expression"),
    "trainable matching nothing": Case("train", flags("--gin.TRAINABLE=['encoder/no_such/.*']"),
                                       "matches no parameter of the model"),
    "overwrite not a flag": Case("train", flags("--gin.OVERWRITE=1"), "OVERWRITE = 1 is not True or False"),
    "empty eval split": Case("train", flags("--gin.EVAL_SPLIT=''"), "EVAL_SPLIT = '' is not a non-empty string"),
    "split the task lacks": Case("train", flags("--gin.EVAL_SPLIT=test"), "has no 'test' split"),
    "unknown task": Case("train", flags("--gin.MIXTURE_OR_TASK_NAME=no_such_task"), "unknown task or mixture 'no_such_task'"),
    "zero vocabulary": Case("train", flags("--gin.VOCAB_SIZE=0"), "VOCAB_SIZE = 0 is below 1"),
    # local data files
    "local task file missing": Case("train", lambda s: _local_task(s, None), "missing.tsv does not exist"),
    "local task header only": Case("train", lambda s: _local_task(s, "inputs\ttargets\n"), "train.tsv has no examples"),
    # output folders
    "empty MODEL_DIR": Case("train", flags("--gin.MODEL_DIR="), "MODEL_DIR = '' is not a folder path"),
    "MODEL_DIR is a file": Case("train", lambda s: [f"--gin.MODEL_DIR={s.file('not_a_folder')}"], "is a file, not a folder"),
    "MODEL_DIR under a file": Case("train", lambda s: [f"--gin.MODEL_DIR={s.file('not_a_folder')}/run"],
                                   "which is a file"),
    "MODEL_DIR in a bucket": Case("train", flags("--gin.MODEL_DIR=gs://bucket/run"), "is not a local folder"),
    "MODEL_DIR of other files": Case("train", _foreign, "holds files no trainer writes (notes.txt)"),
    "MODEL_DIR holding another run": Case("train", lambda s: [s.run() and "--gin.PROMPT_LENGTH=6"],
                                          "holds a run with other settings (PROMPT_LENGTH 4 -> 6)", subprocess=True),
    "MODEL_DIR in use by another trainer": Case("train", _held, "is in use by another trainer"),
    "MODEL_DIR with a damaged checkpoint": Case("train", _no_state_data, "checkpoint_4 does not restore"),
    # the frozen checkpoint
    "checkpoint missing": Case("train", lambda s: [f"--gin.INITIAL_CHECKPOINT_PATH={s.tmp}/nothing"], "does not exist"),
    "checkpoint is some file": Case("train", lambda s: [f"--gin.INITIAL_CHECKPOINT_PATH={s.file('ckpt.txt', 'hello')}"],
                                    "cannot restore"),
    "checkpoint of another size": Case("train", flags("--gin.T5Config.emb_dim=32"), "the model expects shape"),
    "checkpoint missing an array": Case("train", lambda s: [s.checkpoint(lambda c: shutil.rmtree(c / KERNEL))],
                                        "encoder/layers_0/attention/key/kernel' cannot be read"),
    "checkpoint file cut short": Case("train", lambda s: [s.checkpoint(lambda c: _cut(c / "checkpoint"))],
                                      "cut short or damaged"),
    # eval and infer
    "prompt file missing": Case("eval", lambda s: [f"--gin.PROMPT_FILE={s.tmp}/none.npy"], "does not exist"),
    "prompt of another width": Case("eval", lambda s: [f"--gin.PROMPT_FILE={s.prompt(value=np.zeros((4, 5), np.float32))}"],
                                    "has shape (4, 5) but the model expects (4, 64)"),
    "prompt of another length": Case("eval", lambda s: [f"--gin.PROMPT_FILE={s.prompt(value=np.zeros((3, 64), np.float32))}"],
                                     "--gin.PROMPT_LENGTH=4 disagrees with prompt file"),
    "prompt file cut short": Case("eval", lambda s: [f"--gin.PROMPT_FILE={s.file('cut.npy', open(s.prompt(), 'rb').read()[:100])}"],
                                  "cannot read prompt file"),
    "prompt holding NaN": Case("eval", lambda s: [f"--gin.PROMPT_FILE={s.prompt(value=np.full((4, 64), np.nan, np.float32))}"],
                               "holds NaN or infinite values"),
    "prompt file of pickled objects": Case("eval", lambda s: [f"--gin.PROMPT_FILE={s.prompt(value=np.array([{}], object))}"],
                                           "cannot read prompt file"),
    "eval output folder is a file": Case("eval", lambda s: [f"--gin.EVAL_OUTPUT_DIR={s.file('eval_out')}"], "is a file"),
    "empty eval output folder": Case("eval", flags("--gin.EVAL_OUTPUT_DIR="), "EVAL_OUTPUT_DIR = '' is not a folder path"),
    "zero eval batch": Case("eval", flags("--gin.BATCH_SIZE=0"), "BATCH_SIZE = 0 is below 1", subprocess=True),
    "unknown infer mode": Case("infer", flags("--gin.INFER_MODE=decode"), "INFER_MODE = 'decode' is not one of"),
    "several prompts for infer": Case("infer", lambda s: [f"--gin.PROMPT_FILE={[s.prompt('a.npy'), s.prompt('b.npy')]}"],
                                      "PROMPT_FILE lists several prompts"),
    "prompts for tasks the mixture lacks": Case("infer", lambda s: [f"--gin.PROMPT_FILE={ {'other_task': s.prompt()} }"],
                                                "PROMPT_FILE names tasks ['other_task']"),
    "zero infer examples": Case("infer", flags("--gin.INFER_MAX_EXAMPLES=0"), "INFER_MAX_EXAMPLES = 0 is below 1"),
    "infer output in a bucket": Case("infer", flags("--gin.INFER_OUTPUT_DIR=gs://bucket/infer"), "is not a local folder"),
    "infer split the task lacks": Case("infer", flags("--gin.INFER_SPLIT=nope"), "has no 'nope' split"),
}


def _usual_flags(entry, s):
  if entry == "train":
    return TRAIN + [f"--gin.MODEL_DIR={s.out}"]
  macro = "EVAL_OUTPUT_DIR" if entry == "eval" else "INFER_OUTPUT_DIR"
  return (EVAL if entry == "eval" else INFER) + [f"--gin.{macro}={s.out}", f"--gin.PROMPT_FILE={s.prompt()}"]


def test_there_are_at_least_40_kinds():
  assert len(CASES) >= 40


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_and_leaves_the_output_folder_alone(name, tmp_path, finished_run, capsys):
  case = CASES[name]
  s = Setup(tmp_path, finished_run)
  try:
    argv = (_usual_flags(case.entry, s) if case.base else []) + case.args(s)
    before = runs_testlib.tree_digest(s.out)
    if case.subprocess:
      result = runs_testlib.run_cli(case.entry, *argv)
      code, err = result.returncode, result.stderr
    else:
      code, err = MAINS[case.entry](argv), capsys.readouterr().err
    after = runs_testlib.tree_digest(s.out)
  finally:
    for cleanup in s.cleanups:
      cleanup()
    runs_testlib.clear_gin()
  lines = runs_testlib.error_lines(err)
  assert code == 2, err
  assert len(lines) == 1 and lines[0].startswith(f"prompt_tuning.{case.entry}: error: "), lines
  assert case.words in lines[0], lines[0]
  assert "Traceback" not in err and "Event loop is closed" not in err
  assert after == before
