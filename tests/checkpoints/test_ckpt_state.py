"""Training checkpoints: trainable state only, keep-N / keep-best, torn folders, exact resume."""
import json
import os
import random
import signal
import subprocess
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_tuning.checkpoints import finite
from prompt_tuning.checkpoints import prompt_io
from prompt_tuning.checkpoints import state as state_lib
from prompt_tuning.training import optim
from prompt_tuning.training import step as train_step
from tests.checkpoints import ckpt_testlib as lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _state(step, scale=1.0):
  tx = optim.adafactor()
  prompt = {"prompt": {"prompt": jnp.full((3, 4), scale, jnp.float32)}}
  return train_step.TrainState.create(prompt, tx).replace(step=jnp.asarray(step, jnp.int32))


def test_save_restore_round_trip(tmp_path):
  ckpt = state_lib.TrainCheckpointer(str(tmp_path), keep=None, frozen_checkpoint="gs://bucket/t5/checkpoint_1100000")
  saved = _state(7, 0.5)
  ckpt.save(7, saved, {"position": 70, "epoch": 1}, {"accuracy": 0.25}, rng=jax.random.PRNGKey(3))
  got = ckpt.restore_latest(_state(0))
  assert got.step == 7 and got.data_state == {"position": 70, "epoch": 1}
  np.testing.assert_array_equal(got.rng, jax.random.PRNGKey(3))
  for a, b in zip(jax.tree.leaves(got.state), jax.tree.leaves(saved)):
    np.testing.assert_array_equal(a, b)
  meta = json.load(open(tmp_path / "checkpoint_7" / "metadata.json"))
  assert meta["frozen_checkpoint"] == "gs://bucket/t5/checkpoint_1100000"
  assert meta["metrics"] == {"accuracy": 0.25}
  # Trainable state only: a few KB, no backbone.
  size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(tmp_path / "checkpoint_7") for f in fs)
  assert size < 200_000
  np.testing.assert_array_equal(prompt_io.load_npy(ckpt.prompt_path(7), (3, 4)), np.full((3, 4), 0.5))


def test_keep_n_and_keep_best(tmp_path):
  latest = state_lib.TrainCheckpointer(str(tmp_path / "a"), keep=2)
  for step in range(1, 6):
    latest.save(step, _state(step))
  assert latest.steps() == [4, 5]
  best = state_lib.TrainCheckpointer(str(tmp_path / "b"), keep=2, keep_best_metric="acc", mode="max")
  for step, acc in [(1, 0.9), (2, 0.1), (3, 0.8), (4, 0.2), (5, 0.3)]:
    best.save(step, _state(step), metrics={"acc": acc})
  assert best.steps() == [1, 3, 5]  # the two best, and the latest for resuming
  assert best.best_step() == 1
  lowest = state_lib.TrainCheckpointer(str(tmp_path / "c"), keep=1, keep_best_metric="loss", mode="min")
  for step, loss in [(1, 3.0), (2, 1.0), (3, 2.0)]:
    lowest.save(step, _state(step), metrics={"loss": loss})
  assert lowest.steps() == [2, 3]
  tied = state_lib.TrainCheckpointer(str(tmp_path / "d"), keep=1, keep_best_metric="acc", mode="max")
  for step, acc in [(1, 0.5), (2, 0.7), (3, 0.7), (4, 0.1)]:
    tied.save(step, _state(step), metrics={"acc": acc})
  assert tied.steps() == [2, 4] and tied.best_step() == 2  # the first to reach the best value


def test_a_non_finite_state_is_never_saved(tmp_path):
  ckpt = state_lib.TrainCheckpointer(str(tmp_path), keep=None)
  ckpt.save(1, _state(1, 0.5))
  with pytest.raises(finite.NonFiniteError, match=r"checkpoint_2 not saved: params/prompt/prompt hold NaN"):
    ckpt.save(2, _state(2, float("nan")))
  assert sorted(os.listdir(tmp_path)) == ["checkpoint_1", "prompts"]  # no folder, leftover or prompt
  assert os.listdir(tmp_path / "prompts") == ["prompt_1.npy"]
  with pytest.raises(finite.NonFiniteError, match="p.npy not written"):
    prompt_io.save_npy(str(tmp_path / "p.npy"), np.full((3, 4), np.inf, np.float32))
  assert not (tmp_path / "p.npy").exists()


def test_nan_scores_rank_below_every_number_and_metadata_stays_strict_json(tmp_path):
  best = state_lib.TrainCheckpointer(str(tmp_path), keep=1, keep_best_metric="eval/score", mode="max")
  for step, score in [(1, float("nan")), (2, -3.0), (3, float("nan")), (4, -7.0)]:
    best.save(step, _state(step), {"best_metrics": {"eval/score": score}}, metrics={"eval/score": score})
  assert best.best_step() == 2 and best.steps() == [2, 4]
  lowest = state_lib.TrainCheckpointer(str(tmp_path / "min"), keep=1, keep_best_metric="loss", mode="min")
  for step, loss in [(1, float("nan")), (2, 9.0), (3, float("inf"))]:
    lowest.save(step, _state(step), metrics={"loss": loss})
  assert lowest.best_step() == 2

  def no_constants(name):
    raise AssertionError(f"{name} in metadata.json: not strict JSON")
  meta = json.loads((tmp_path / "checkpoint_4" / "metadata.json").read_text(), parse_constant=no_constants)
  assert meta["metrics"] == {"eval/score": -7.0}
  meta = json.loads((tmp_path / "checkpoint_2" / "metadata.json").read_text(), parse_constant=no_constants)
  assert meta["data_state"] == {"best_metrics": {"eval/score": -3.0}}
  assert json.loads((tmp_path / "min" / "checkpoint_3" / "metadata.json").read_text())["metrics"] == {"loss": None}
  assert state_lib.strict_json({"a": [np.float32("nan"), 1.5], "b": np.array([np.inf, 2.0]), "c": "x"}) == {
      "a": [None, 1.5], "b": [None, 2.0], "c": "x"}


def test_a_non_finite_checkpoint_is_not_restored(tmp_path, monkeypatch):
  """A checkpoint holding NaN (written before saves were checked) is refused when read back."""
  ckpt = state_lib.TrainCheckpointer(str(tmp_path), keep=None)
  monkeypatch.setattr(finite, "refuse_nonfinite", lambda tree, what: None)
  ckpt.save(3, _state(3, float("nan")))
  monkeypatch.undo()
  with pytest.raises(state_lib.CheckpointError, match="checkpoint_3 does not restore: params/prompt/prompt hold NaN"):
    ckpt.restore(3, _state(0))


def test_torn_checkpoints_are_skipped(tmp_path, caplog):
  ckpt = state_lib.TrainCheckpointer(str(tmp_path), keep=None)
  for step in (2, 4):
    ckpt.save(step, _state(step, float(step)))
  os.remove(tmp_path / "checkpoint_4" / "metadata.json")  # killed before the commit marker
  os.makedirs(tmp_path / ".tmp-checkpoint_8-deadbeef" / "state")  # a write in progress when killed
  os.makedirs(tmp_path / ".tmp-checkpoint_6-deleted" / "state")  # killed while deleting checkpoint_6
  with caplog.at_level("WARNING"):
    got = state_lib.TrainCheckpointer(str(tmp_path), keep=None).restore_latest(_state(0))
  assert got.step == 2 and float(got.state.params["prompt"]["prompt"][0, 0]) == 2.0
  assert "checkpoint_4: incomplete" in caplog.text
  assert not any(name.startswith(".tmp-") for name in os.listdir(tmp_path))


def test_peft_export_on_save(tmp_path):
  ckpt = state_lib.TrainCheckpointer(str(tmp_path), peft_export={"num_layers": 2, "num_attention_heads": 2})
  ckpt.save(3, _state(3, 0.25))
  np.testing.assert_array_equal(prompt_io.load_peft(str(tmp_path / "prompts" / "peft_3"), (3, 4)), 0.25)


def _driver(backbone, model_dir, out, cache, trainable, steps=40, methods=False):
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "", "JAX_COMPILATION_CACHE_DIR": str(cache),
         "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
         "PYTHONPATH": ROOT}
  cmd = [sys.executable, "-m", "tests.checkpoints.resume_driver", "--backbone", str(backbone),
         "--model_dir", str(model_dir), "--steps", str(steps), "--save_every", "2", "--out", str(out),
         "--trainable", trainable] + (["--methods"] if methods else [])
  return cmd, env


@pytest.mark.parametrize("trainable,methods", [("prompt/.*", False), (".*", False), ("prompt/.*", True)],
                         ids=["prompt_tuning", "model_tuning", "prompt_methods"])
def test_sigkill_and_resume_is_bit_identical(tmp_path, trainable, methods):
  """A run killed at a random moment and restarted ends bit for bit as one that was not: prompt
  tuning, model tuning, and the prompt with IA3, per-layer and decoder prompts (their subtrees
  and optimizer state checkpointed beside it)."""
  backbone = lib.write_random_backbone(tmp_path / "backbone", lib.tiny_cfg())
  # A compilation cache shared by the three runs (and later test sessions): only the first compiles.
  cache = os.path.join(tempfile.gettempdir(), "prompt_tuning_tests_jax_cache")
  cmd, env = _driver(backbone, tmp_path / "straight", tmp_path / "straight.npy", cache, trainable, methods=methods)
  subprocess.run(cmd, env=env, cwd=ROOT, check=True, capture_output=True, timeout=300)

  cmd, env = _driver(backbone, tmp_path / "killed", tmp_path / "killed.npy", cache, trainable, methods=methods)
  proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
  for line in proc.stdout:
    if line.strip() == "saved 4":
      break
  delay = random.Random().uniform(0.0, 0.3)  # kill somewhere in the following steps or writes
  # (40 steps: the run needs about 2 s after step 4 here, far more than the largest delay)
  try:
    proc.wait(timeout=delay)
  except subprocess.TimeoutExpired:
    pass
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait(timeout=60)
  assert not (tmp_path / "killed.npy").exists(), "the run finished before the kill; nothing was tested"

  rerun = subprocess.run(cmd, env=env, cwd=ROOT, check=True, capture_output=True, text=True, timeout=300)
  resumed = [int(line.split()[1]) for line in rerun.stdout.splitlines() if line.startswith("resumed")]
  assert resumed and resumed[0] >= 4, rerun.stdout
  straight, killed = np.load(tmp_path / "straight.npy"), np.load(tmp_path / "killed.npy")
  assert straight.tobytes() == killed.tobytes(), f"delay {delay:.3f}s, resumed at {resumed}"
  # The resumed run's log is the uninterrupted run's: one line per step, the same values, in
  # metrics.jsonl and as TensorBoard reads the event files (the killed run's later steps dropped).
  straight_log = (tmp_path / "straight" / "metrics.jsonl").read_text()
  assert (tmp_path / "killed" / "metrics.jsonl").read_text() == straight_log
  assert [json.loads(l)["step"] for l in straight_log.splitlines()] == list(range(1, 41))
  assert _tensorboard_scalars(tmp_path / "killed") == _tensorboard_scalars(tmp_path / "straight")
  assert len(os.listdir(tmp_path / "killed" / "tensorboard")) == 2  # one event file per start


def _tensorboard_scalars(model_dir):
  """{tag: [(step, value), ...]} as TensorBoard's loader reads a run's event files."""
  from tensorboard.backend.event_processing import plugin_event_accumulator
  from tensorboard.util import tensor_util
  accumulator = plugin_event_accumulator.EventAccumulator(str(model_dir / "tensorboard"))
  accumulator.Reload()
  return {tag: [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in accumulator.Tensors(tag)]
          for tag in accumulator.Tags()["tensors"]}


def test_a_checkpoint_of_another_trainable_set_is_refused_naming_its_patterns(tmp_path):
  ckpt = state_lib.TrainCheckpointer(str(tmp_path), keep=None, trainable=["prompt/.*"])
  ckpt.save(2, _state(2))
  other = train_step.TrainState.create({"encoder": {"encoder_norm": {"scale": jnp.ones((4,))}}},
                                       optim.adafactor())
  with pytest.raises(state_lib.CheckpointError, match=r"checkpoint_2 does not restore: it lacks "
                     r"train_state/.*/encoder/encoder_norm/scale.*changed\? It was saved with TRAINABLE = "
                     r"\['prompt/\.\*'\]\.\)"):
    state_lib.TrainCheckpointer(str(tmp_path), keep=None).restore_latest(other)


def test_format_1_checkpoints_still_restore(tmp_path):
  """Format 1 stored the trainable subtree under `prompt`."""
  import orbax.checkpoint as ocp
  from flax import serialization
  saved = _state(5, 0.75)
  tree = serialization.to_state_dict(saved)
  tree = {"train_state": {("prompt" if k == "params" else k): v for k, v in tree.items()}}
  folder = tmp_path / "checkpoint_5"
  ocp.Checkpointer(ocp.StandardCheckpointHandler()).save(str(folder / "state"), args=ocp.args.StandardSave(tree))
  (folder / "metadata.json").write_text(json.dumps({"format": "prompt_tuning.train_checkpoint/1", "step": 5}))
  got = state_lib.TrainCheckpointer(str(tmp_path), keep=None).restore_latest(_state(0))
  assert got.step == 5
  for a, b in zip(jax.tree.leaves(got.state), jax.tree.leaves(saved)):
    np.testing.assert_array_equal(a, b)
