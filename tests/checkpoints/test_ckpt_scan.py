"""Checkpoints keep T5X's `layers_{i}` names whatever the model's layout: a scanned model reads
them stacked, shard by shard; training checkpoints record the layout and refuse the other one."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from prompt_tuning.checkpoints import restore
from prompt_tuning.checkpoints import state as state_lib
from prompt_tuning.checkpoints import t5x
from prompt_tuning.config.errors import ConfigError
from prompt_tuning.model import layer_stack
from prompt_tuning.model import prompted as model_lib
from prompt_tuning.parallel import partitioning
from prompt_tuning.training import optim
from prompt_tuning.training import step as train_step
from tests.checkpoints import ckpt_testlib as lib


def _flat(tree):
  return traverse_util.flatten_dict(tree, sep="/")


def _assert_same(a, b):
  a, b = _flat(a), _flat(b)
  assert a.keys() == b.keys()
  for name in a:
    np.testing.assert_array_equal(np.asarray(a[name]), np.asarray(b[name]), err_msg=name)


def _hf_cfg(folder):
  from prompt_tuning.checkpoints import hf
  return hf.config_from_hf(hf.read_hf_config(folder), dtype="float32")


@pytest.mark.parametrize("source", ["tensorstore", "msgpack", "hf"])
def test_a_scanned_model_restores_every_checkpoint_stacked(source, hf_t5):
  path, cfg = {"tensorstore": (lib.TENSORSTORE, lib.TENSORSTORE_CFG), "msgpack": (lib.MSGPACK, lib.MSGPACK_CFG),
               "hf": (hf_t5[0], _hf_cfg(hf_t5[0]))}[source]
  unrolled = model_lib.build(cfg, prompt_length=2)
  scanned = model_lib.build(cfg.replace(scan_layers=True), prompt_length=2)
  frozen = restore.restore_frozen(unrolled, path)
  stacked = restore.restore_frozen(scanned, path)  # strict: every name and shape agrees
  assert "layers" in stacked["encoder"] and "layers_0" not in stacked["encoder"]
  _assert_same(stacked, layer_stack.stack_layers(frozen))
  inp, dec, tgt = lib.batch(cfg.vocab_size)
  prompt = {"prompt": {"prompt": jnp.ones((2, cfg.emb_dim))}}
  logits = [jax.jit(m.apply)({"params": model_lib.merge(prompt, f)}, inp, dec, tgt)
            for m, f in ((unrolled, frozen), (scanned, stacked))]
  np.testing.assert_allclose(logits[1], logits[0], rtol=1e-5, atol=1e-5)


def test_a_scanned_restore_reads_each_shard_of_every_layer_into_the_mesh_layout():
  cfg = lib.MSGPACK_CFG.replace(scan_layers=True)
  module = model_lib.build(cfg, prompt_length=2)
  stacked = restore.restore_frozen(module, lib.MSGPACK, mesh=partitioning.create_mesh((4, 2)), dtype="bfloat16")
  q = stacked["decoder"]["layers"]["self_attention"]["query"]["kernel"]  # [2 layers, 8, 4 heads x 3]
  assert q.dtype == jnp.bfloat16 and q.addressable_shards[0].data.shape == (2, 8, 6)
  assert stacked["decoder"]["layers"]["pre_mlp_layer_norm"]["scale"].dtype == jnp.float32
  single = restore.restore_frozen(model_lib.build(cfg.replace(scan_layers=False), prompt_length=2),
                                  lib.MSGPACK, dtype="bfloat16")
  _assert_same(stacked, layer_stack.stack_layers(single))


def test_stacked_leaf_reads_only_the_slice_asked_for():
  reads = []

  class Counting(t5x.ArrayLeaf):
    def read(self, index=()):
      reads.append(tuple(index))
      return super().read(index)

  parts = [Counting(np.arange(12, dtype=np.float32).reshape(3, 4) + 100 * i) for i in range(3)]
  leaf = t5x.StackedLeaf(parts)
  assert leaf.shape == (3, 3, 4) and leaf.dtype == np.float32
  whole = np.stack([p.value() for p in parts])
  reads.clear()
  np.testing.assert_array_equal(leaf.read((slice(None), slice(1, 3), slice(0, 2))), whole[:, 1:3, 0:2])
  assert reads == [(slice(1, 3), slice(0, 2))] * 3  # each layer's own slice, nothing more
  reads.clear()
  np.testing.assert_array_equal(leaf.read((slice(1, 2),)), whole[1:2])
  assert len(reads) == 1


def test_errors_and_assignment_rules_keep_the_checkpoint_names(hf_t5):
  folder = hf_t5[0]  # 2 encoder and 3 decoder layers
  cfg = _hf_cfg(folder).replace(scan_layers=True)
  with pytest.raises(ValueError, match=r"'decoder/layers_0/mlp/wi_0/kernel': the model expects shape \(16, 24\)"):
    restore.restore_frozen(model_lib.build(cfg.replace(mlp_dim=24), prompt_length=2), folder)
  with pytest.raises(ValueError, match="'decoder/layers_3/.*' but not found"):
    restore.restore_frozen(model_lib.build(cfg.replace(num_decoder_layers=4), prompt_length=2), folder)
  # A deeper decoder from scratch where the checkpoint has no layer, and a remapped layer 0.
  leaves = restore.open_backbone(folder)
  deeper = model_lib.build(cfg.replace(num_decoder_layers=4), prompt_length=2)
  frozen = _flat(restore.restore_frozen(
      deeper, folder, fallback_to_scratch=True,
      assignment_map=[(r"encoder/layers_0/(.*)", r"encoder/layers_1/\1"), (r"decoder/layers_0/mlp/.*", None)]))
  query = frozen["encoder/layers/attention/query/kernel"]
  np.testing.assert_array_equal(query[0], leaves["encoder/layers_1/attention/query/kernel"].value())
  np.testing.assert_array_equal(query[1], leaves["encoder/layers_1/attention/query/kernel"].value())
  wo = frozen["decoder/layers/mlp/wo/kernel"]
  assert wo.shape == (4, 32, 16)
  for i in (1, 2):
    np.testing.assert_array_equal(wo[i], leaves[f"decoder/layers_{i}/mlp/wo/kernel"].value())
  for i in (0, 3):  # from scratch: random, not a copy of any checkpoint layer
    assert not any(np.array_equal(wo[i], leaves[f"decoder/layers_{j}/mlp/wo/kernel"].value()) for j in range(3))
    assert float(np.std(np.asarray(wo[i]))) > 0
  out = frozen["decoder/layers/self_attention/out/kernel"]
  np.testing.assert_array_equal(out[0], leaves["decoder/layers_0/self_attention/out/kernel"].value())


def _state():
  prompt = {"prompt": {"prompt": jnp.ones((3, 4), jnp.float32)}}
  return train_step.TrainState.create(prompt, optim.adafactor())


def test_training_checkpoints_record_the_layout_and_refuse_the_other(tmp_path):
  scanned = state_lib.TrainCheckpointer(str(tmp_path), keep=None, scan_layers=True)
  scanned.save(2, _state())
  assert json.load(open(tmp_path / "checkpoint_2" / "metadata.json"))["scan_layers"] is True
  assert scanned.restore_latest(_state()).step == 2
  unrolled = state_lib.TrainCheckpointer(str(tmp_path), keep=None, scan_layers=False)
  for restore_call in (lambda: unrolled.restore_latest(_state()), lambda: unrolled.restore(2, _state())):
    with pytest.raises(ConfigError, match=r"checkpoint_2 was saved with SCAN_LAYERS = True but this run has "
                                          r"SCAN_LAYERS = False: set SCAN_LAYERS = True to resume it"):
      restore_call()
  # Checkpoints written before the layout was recorded are unrolled ones.
  meta_path = tmp_path / "checkpoint_2" / "metadata.json"
  meta = json.load(open(meta_path))
  del meta["scan_layers"]
  json.dump(meta, open(meta_path, "w"))
  assert unrolled.restore_latest(_state()).step == 2
  with pytest.raises(ConfigError, match="saved with SCAN_LAYERS = False"):
    scanned.restore_latest(_state())
