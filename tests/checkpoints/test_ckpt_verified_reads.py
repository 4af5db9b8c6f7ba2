"""Checkpoint reads are verified: a damaged copy of a fixture is an error naming the array (or
file), never zeros or a silent substitute. Each case corrupts a copy in a temporary folder."""
import json
import os
import shutil

import jax.numpy as jnp
import msgpack
import numpy as np
import pytest

from prompt_tuning.checkpoints import prompt_io
from prompt_tuning.checkpoints import restore
from prompt_tuning.checkpoints import state as state_lib
from prompt_tuning.checkpoints import t5x
from prompt_tuning.model import prompted as model_lib
from prompt_tuning.model import t5
from prompt_tuning.training import optim
from prompt_tuning.training import step as train_step
from tests.checkpoints import ckpt_testlib as lib

QUICKSTART = os.path.join(os.path.dirname(t5x.__file__), "..", "assets", "quickstart", "t5_1_1_tiny_lm")
QUICKSTART_CFG = t5.T5Config(emb_dim=64, num_heads=4, head_dim=16, num_encoder_layers=2,
                             num_decoder_layers=2, mlp_dim=128, dtype="float32")  # models/sizes/quickstart.gin
KERNEL = "target.encoder.layers_0.attention.key.kernel"  # a zarr folder of the quickstart checkpoint
KERNEL_NAME = "optimizer/target/encoder/layers_0/attention/key/kernel"


def _cut(path, keep=0.5):
  data = open(path, "rb").read()
  open(path, "wb").write(data[:int(len(data) * keep)])


def _edit_zarray(folder, **changes):
  path = os.path.join(folder, ".zarray")
  meta = json.load(open(path))
  json.dump({**meta, **changes}, open(path, "w"))


# (what is done to the copy of the quickstart checkpoint, the words the error must hold)
TENSORSTORE_CASES = {
    "array folder deleted": (lambda d: shutil.rmtree(os.path.join(d, KERNEL)), [KERNEL_NAME, "is missing"]),
    "chunk deleted": (lambda d: os.remove(os.path.join(d, KERNEL, "0.0")), [KERNEL_NAME, "is missing"]),
    "chunk cut short": (lambda d: _cut(os.path.join(d, KERNEL, "0.0")), [KERNEL_NAME, "truncated"]),
    ".zarray of another shape": (lambda d: _edit_zarray(os.path.join(d, KERNEL), shape=[64, 32], chunks=[64, 32]),
                                 [KERNEL_NAME, 'Expected "shape" of [64,64]']),
    ".zarray of another dtype": (lambda d: _edit_zarray(os.path.join(d, KERNEL), dtype="<f4"),
                                 [KERNEL_NAME, 'Expected "dtype" of "<f2"']),
    "msgpack file cut short": (lambda d: _cut(os.path.join(d, "checkpoint")), ["checkpoint cannot be read", "cut short"]),
}


@pytest.mark.parametrize("case", sorted(TENSORSTORE_CASES))
def test_damaged_quickstart_checkpoint_is_an_error_naming_the_array(tmp_path, case):
  damage, words = TENSORSTORE_CASES[case]
  copy = str(tmp_path / "ckpt")
  shutil.copytree(QUICKSTART, copy)
  module = model_lib.build(QUICKSTART_CFG, prompt_length=2)
  restore.restore_frozen(module, copy)  # the undamaged copy restores
  damage(copy)
  with pytest.raises(t5x.CheckpointReadError) as err:
    restore.restore_frozen(module, copy)
  for word in words:
    assert word in str(err.value), str(err.value)


def _repack_msgpack(src, dst, name, edit):
  """Rewrites one inline array's (shape, dtype, bytes) payload of a msgpack checkpoint."""
  def hook(code, data):
    return msgpack.ExtType(code, data)
  tree = msgpack.unpackb(open(src, "rb").read(), ext_hook=hook, raw=False, strict_map_key=False)
  node = tree
  *parents, leaf = name.split("/")
  for key in parents:
    node = node[key]
  shape, dtype, buf = msgpack.unpackb(node[leaf].data)
  node[leaf] = msgpack.ExtType(node[leaf].code, msgpack.packb(edit(shape, dtype, buf), use_bin_type=True))
  open(dst, "wb").write(msgpack.packb(tree, use_bin_type=True))


def test_msgpack_inline_arrays_are_verified(tmp_path):
  name = "optimizer/target/encoder/layers_0/attention/query/kernel"
  bad = str(tmp_path / "wrong_dtype")
  _repack_msgpack(lib.MSGPACK, bad, name, lambda shape, dtype, buf: (shape, "float64", buf))
  with pytest.raises(t5x.CheckpointReadError, match=f"array '{name}'.*do not hold float64 values of shape"):
    t5x.open_checkpoint(bad)
  cut = str(tmp_path / "cut")
  shutil.copy(lib.MSGPACK, cut)
  _cut(cut, 0.7)
  with pytest.raises(t5x.CheckpointReadError, match="cut short"):
    t5x.open_checkpoint(cut)


def test_orbax_per_array_folders_are_verified(tmp_path):
  copy = str(tmp_path / "1")
  shutil.copytree(lib.ORBAX_NON_T5, copy)
  kernel = t5x.open_checkpoint(copy).leaves["_optimizer/state/param_states/kernel"].assume((10, 5), np.float64)
  assert kernel.value().shape == (10, 5)
  os.remove(os.path.join(copy, "_optimizer.state.param_states.kernel", "0.0"))
  kernel = t5x.open_checkpoint(copy).leaves["_optimizer/state/param_states/kernel"].assume((10, 5), np.float64)
  with pytest.raises(t5x.CheckpointReadError, match="'_optimizer/state/param_states/kernel' cannot be read.*missing"):
    kernel.value()


def _state(step, rows=3, dtype=jnp.float32):
  prompt = {"prompt": {"prompt": jnp.full((rows, 4), 0.5, dtype)}}
  return train_step.TrainState.create(prompt, optim.adafactor()).replace(step=jnp.asarray(step, jnp.int32))


def _data_files(folder):
  return sorted(os.path.join(d, f) for d, _, fs in os.walk(os.path.join(folder, "d")) for f in fs)


# (damage to a copy of a training checkpoint's state/ folder, the words the error must hold)
STATE_CASES = {
    "a data file deleted": (lambda s: [os.remove(f) for f in _data_files(s)], ["train_state/"]),
    "a data file cut short": (lambda s: [_cut(f) for f in _data_files(s)], ["train_state/"]),
    "manifest deleted": (lambda s: os.remove(os.path.join(s, "manifest.ocdbt")), ["train_state/"]),
    "manifest cut short": (lambda s: _cut(os.path.join(s, "manifest.ocdbt")), ["train_state/"]),
    "Orbax _METADATA cut short": (lambda s: _cut(os.path.join(s, "_METADATA")), ["_METADATA cannot be read"]),
}


@pytest.mark.parametrize("case", sorted(STATE_CASES))
def test_damaged_training_checkpoint_is_an_error_naming_it(tmp_path, case):
  ckpt = state_lib.TrainCheckpointer(str(tmp_path), keep=None)
  ckpt.save(2, _state(2))
  damage, words = STATE_CASES[case]
  damage(str(tmp_path / "checkpoint_2" / "state"))
  with pytest.raises(state_lib.CheckpointError) as err:
    ckpt.restore_latest(_state(0))  # a complete checkpoint that does not restore: no silent fallback
  for word in words + ["checkpoint_2 does not restore", "delete that folder"]:
    assert word in str(err.value), str(err.value)


def test_training_checkpoint_of_another_shape_or_dtype_is_refused(tmp_path):
  ckpt = state_lib.TrainCheckpointer(str(tmp_path), keep=None)
  ckpt.save(2, _state(2))
  with pytest.raises(state_lib.CheckpointError, match=r"'train_state/params/prompt/prompt' is stored as "
                                                      r"float32\[3, 4\] but this run's state has float32\[5, 4\]"):
    ckpt.restore(2, _state(0, rows=5))
  with pytest.raises(state_lib.CheckpointError, match=r"stored as float32\[3, 4\] but this run's state has bfloat16"):
    ckpt.restore(2, _state(0, dtype=jnp.bfloat16))
  np.testing.assert_array_equal(ckpt.restore(2, _state(0)).state.params["prompt"]["prompt"], 0.5)


PROMPT_CASES = {
    "npy cut short": (lambda p: _cut(p, 0.9), "cannot be read"),
    "npy header only": (lambda p: _cut(p, 0.3), "cannot be read"),
    "npy holding NaN": (lambda p: np.save(p, np.full((5, 256), np.nan, np.float32)), "NaN or infinite"),
}


@pytest.mark.parametrize("case", sorted(PROMPT_CASES))
def test_damaged_prompt_file_is_an_error_naming_it(tmp_path, case):
  path = str(tmp_path / "prompt.npy")
  shutil.copy(lib.PROMPT_5x256, path)
  damage, words = PROMPT_CASES[case]
  damage(path)
  with pytest.raises(ValueError, match=words) as err:
    prompt_io.load_prompt(path, (5, 256))
  assert path in str(err.value)


def test_damaged_peft_adapter_is_an_error(tmp_path):
  folder = str(tmp_path / "peft")
  prompt_io.save_peft(folder, np.ones((5, 8), np.float32), num_layers=2, num_attention_heads=2)
  _cut(os.path.join(folder, prompt_io.ADAPTER_WEIGHTS), 0.8)
  with pytest.raises(ValueError, match="adapter_model.safetensors cannot be read.*cut short"):
    prompt_io.load_prompt(folder, (5, 8))
