"""The prompt methods through `python -m prompt_tuning.train` on the quickstart model: each run
trains only its method's parameters, writes the prompt files it promises, and every combination a
method cannot serve ends with one line, exit status 2 and nothing written."""
import json
import os

import numpy as np
import pytest

from prompt_tuning import eval as eval_main
from prompt_tuning import train as train_main
from prompt_tuning.checkpoints import prompt_io
from prompt_tuning.checkpoints import t5x
from prompt_tuning.runs import methods
from tests.runs import runs_testlib
from tests.runs.runs_testlib import TINY

# The quickstart cut down (TINY without its gin file), in-process (batch 8 over the 8 devices).
SHORT = TINY[1:] + ["--gin.BATCH_SIZE=8"]
SHORT_TEXT = "--gin.WAYWARD_TEXT='review : positive or negative'"


@pytest.fixture(autouse=True)
def _clean_gin():
  yield
  runs_testlib.clear_gin()


def _train(tmp_path, name, *flags):
  model_dir = tmp_path / name
  code = train_main.main([f"--gin_file=configs/extended/quickstart_{name}.gin", *SHORT,
                          f"--gin.MODEL_DIR={model_dir}", *flags])
  runs_testlib.clear_gin()
  assert code == 0
  return model_dir


def _trained_arrays(model_dir, step=4):
  """Top-level keys of the checkpoint's trainable parameters, and of its optimizer statistics."""
  names = list(t5x.open_checkpoint(str(model_dir / f"checkpoint_{step}" / "state")).leaves)
  params = {n.split("/")[2] for n in names if n.startswith("train_state/params/")}
  # train_state/opt_state/0/<statistic>/<top-level key>/...
  statistics = {n.split("/")[4] for n in names if n.startswith("train_state/opt_state/") and n.count("/") > 4}
  return params, statistics


MULTITASK = ("--gin.MIXTURE_OR_TASK_NAME=@prompt_tuning.data.quickstart.multitask()", "--gin.NUM_TASKS=2")
# name: (extra flags, trained subtrees, shape of prompt_best.npy or None, how prompt_eval reads
# the result back: the method's gin file + the training checkpoint, or the plain model + the
# exported prompt file; with the flags it needs)
RUNS = {
    "multitask_prompt": (("--gin.MULTITASK_COMBINE='project'",), {"multitask_prompt"}, (2, 4, 64),
                         ("checkpoint", "--gin.MULTITASK_COMBINE='project'") + MULTITASK),
    "reparam_prompt": (("--gin.REPARAM_FORM=residual",), {"reparam_prompt"}, (4, 64), ("prompt_file",)),
    "wayward_prompt": ((SHORT_TEXT, "--gin.PROMPT_LENGTH=@prompt_tuning.model.prompts.token_count()"),
                       {"prompt"}, (6, 64), None),
    "rank_classification_loss": (("--gin.RANK_LOSS=hinge",), {"prompt"}, (4, 64), None),
    "ia3": (("--gin.PROMPT_LENGTH=0",), {"ia3"}, None, ("checkpoint", "--gin.PROMPT_LENGTH=0")),
    "per_layer_prompt": ((), {"prompt", "deep_prompt"}, (4, 64), ("checkpoint",)),
    "decoder_prompt": (("--gin.DECODER_PROMPT_LENGTH=2",), {"prompt", "decoder_prompt"}, (4, 64),
                       ("checkpoint", "--gin.DECODER_PROMPT_LENGTH=2")),
}


def _evaluates_as_trained(tmp_path, name, model_dir, how, *flags):
  """prompt_tuning.eval of the result scores what the run's own evaluation at step 4 scored: a
  training checkpoint read back with the method's gin file, or the exported prompt file in the
  plain model (no MLP)."""
  step4 = json.load(open(model_dir / "checkpoint_4" / "metadata.json"))["metrics"]
  if how == "checkpoint":
    source = [f"--gin_file=configs/extended/{name}.gin", f"--gin.PROMPT_FILE={model_dir}/checkpoint_4"]
  else:
    source = [f"--gin.PROMPT_FILE={model_dir}/prompts/prompt_4.npy"]
  out = tmp_path / "eval"
  code = eval_main.main(["--gin_file=configs/runs/quickstart_eval.gin", *source, "--gin.PROMPT_LENGTH=4",
                         "--gin.EVAL_MAX_EXAMPLES=8", f"--gin.EVAL_OUTPUT_DIR={out}", *flags])
  assert code == 0
  metrics = json.loads(open(out / "metrics.jsonl").readline())
  assert metrics["eval/score"] == pytest.approx(step4["eval/score"])
  losses = [k for k in step4 if k.endswith("/loss")]
  assert losses and all(metrics[k] == pytest.approx(step4[k], rel=1e-4) for k in losses)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_each_method_trains_only_its_parameters_through_the_cli(tmp_path, name):
  flags, trained, prompt_shape, evaluation = RUNS[name]
  model_dir = _train(tmp_path, name, *flags)
  params, statistics = _trained_arrays(model_dir)
  assert params == trained and statistics == trained  # no backbone array, weight or statistic
  lines = [json.loads(l) for l in open(model_dir / "metrics.jsonl")]
  assert any("eval/score" in l for l in lines)
  if prompt_shape is None:
    assert not (model_dir / "prompt_best.npy").exists() and not (model_dir / "prompts").exists()
  else:
    assert np.load(model_dir / "prompt_best.npy").shape == prompt_shape
    assert np.load(model_dir / "prompts" / "prompt_4.npy").shape == prompt_shape
  if name == "wayward_prompt":
    # The prompt starts at the text's embeddings (no distance), then training moves it away.
    distances = [l["train/regularizer"] for l in lines if "train/regularizer" in l]
    assert len(distances) == 4 and distances[0] == 0 and all(d > 0 for d in distances[1:])
  if name == "rank_classification_loss":
    assert any("eval/quickstart_review_sentiment_rank_classification/accuracy" in l for l in lines)
  if evaluation is not None:
    _evaluates_as_trained(tmp_path, name, model_dir, *evaluation)
  if name == "multitask_prompt":
    _task_prompts_serve_the_plain_model(tmp_path, model_dir)


def _task_prompts_serve_the_plain_model(tmp_path, model_dir):
  """Each task's exported prompt (.npy and PEFT) is that task's prompt: the plain model with task
  0's on the plain sentiment task (no sentinel) scores what the multi-task model scored on the
  sentinel-prefixed task at step 4."""
  out = tmp_path / "tasks"
  written = methods.export_task_prompts(str(model_dir / "prompts" / "prompt_4.npy"), str(out),
                                        ["sentiment", "aspects"], peft_source=str(model_dir))
  assert [os.path.basename(p) for p in written] == ["sentiment.npy", "sentiment", "aspects.npy", "aspects"]
  table = np.load(model_dir / "prompts" / "prompt_4.npy")
  np.testing.assert_array_equal(prompt_io.load_prompt(str(out / "aspects")), table[1])
  step4 = json.load(open(model_dir / "checkpoint_4" / "metadata.json"))["metrics"]
  code = eval_main.main(["--gin_file=configs/runs/quickstart_eval.gin", "--gin.PROMPT_LENGTH=4",
                         "--gin.EVAL_MAX_EXAMPLES=8", f"--gin.PROMPT_FILE={out}/sentiment.npy",
                         f"--gin.EVAL_OUTPUT_DIR={tmp_path / 'plain'}"])
  assert code == 0
  metrics = json.loads(open(tmp_path / "plain" / "metrics.jsonl").readline())
  for metric in ("loss", "accuracy"):
    assert metrics[f"eval/quickstart_review_sentiment/{metric}"] == pytest.approx(
        step4[f"eval/task_index_quickstart_review_sentiment/{metric}"], rel=1e-4)


BAD = {  # name: (gin file, flags, what the line says)
    "packing with per-layer prompts": ("per_layer_prompt", ["--gin.PACK=True"], "per-layer prompts"),
    "packing with a decoder prompt": ("decoder_prompt", ["--gin.PACK=True"], "a decoder prompt"),
    "packing with a rank loss": ("rank_classification_loss", ["--gin.PACK=True"], "the softmax rank loss"),
    "a task id outside the table": ("multitask_prompt", ["--gin.NUM_TASKS=1"],
                                    "selects task prompt 1, outside the multi-task prompt's table of 1"),
    "tasks without a task-index sentinel": ("multitask_prompt", ["--gin.multitask.task_index=False"],
                                            "has none: train on its task_index_ variant"),
    "a multi-task prompt exported to PEFT": ("multitask_prompt", ["--gin.PEFT_EXPORT=True"], "PEFT_EXPORT"),
    "per-layer prompts on a suffix prompt": ("per_layer_prompt", ["--gin.PROMPT_PLACEMENT='suffix'"],
                                             "take the positions of a prefix prompt"),
    "per-layer prompts outside the encoder": ("per_layer_prompt", ["--gin.PER_LAYER_LAYERS=[5]"],
                                              "are not encoder layers"),
    "a method left out of TRAINABLE": ("per_layer_prompt", ["--gin.TRAINABLE=['prompt/.*']"],
                                       "deep_prompt/prompt belongs to the deep_prompt method"),
    "a wayward text longer than the prompt": ("wayward_prompt", [SHORT_TEXT], "has 6 tokens but the prompt has 4"),
    "a rank loss on a task without candidates": (
        "rank_classification_loss", ["--gin.MIXTURE_OR_TASK_NAME=@prompt_tuning.data.quickstart.task()"],
        "has none: set MIXTURE_OR_TASK_NAME to its _rank_classification twin"),
    "an unknown rank loss": ("rank_classification_loss", ["--gin.RANK_LOSS='perceptron'"],
                             "RANK_LOSS = 'perceptron' is not one of 'softmax', 'hinge'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_method_with_an_option_it_cannot_serve_is_one_line_and_writes_nothing(tmp_path, capsys, case):
  name, flags, needle = BAD[case]
  model_dir = tmp_path / "run"
  code = train_main.main([f"--gin_file=configs/extended/quickstart_{name}.gin", *SHORT,
                          f"--gin.MODEL_DIR={model_dir}", *flags])
  err = [l for l in capsys.readouterr().err.splitlines() if l.startswith("prompt_tuning.")]
  assert code == 2 and len(err) == 1 and err[0].startswith("prompt_tuning.train: error: "), err
  assert needle in err[0], err[0]
  assert not os.path.exists(model_dir) or not os.listdir(model_dir)
