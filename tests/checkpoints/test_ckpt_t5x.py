"""Restoring real T5X checkpoints in all three layouts, whole and shard by shard."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from prompt_tuning.checkpoints import _store
from prompt_tuning.checkpoints import restore
from prompt_tuning.checkpoints import t5x
from prompt_tuning.model import params as params_lib
from prompt_tuning.model import prompted as model_lib
from prompt_tuning.parallel import partitioning
from tests.checkpoints import ckpt_testlib as lib


def _forward(module, frozen, prompt_value=None):
  prompt = {"prompt": {"prompt": jnp.asarray(prompt_value if prompt_value is not None else
                                             np.full((module.prompt_length, module.cfg.emb_dim), 0.1, np.float32))}}
  inp, dec, tgt = lib.batch(module.cfg.vocab_size)
  return jax.jit(module.apply)({"params": model_lib.merge(prompt, frozen)}, inp, dec, tgt)


@pytest.mark.parametrize("path,cfg,layout", [(lib.MSGPACK, lib.MSGPACK_CFG, "msgpack"),
                                             (lib.TENSORSTORE, lib.TENSORSTORE_CFG, "tensorstore")])
def test_fixture_restores_into_the_model(path, cfg, layout):
  assert t5x.detect_layout(path) == layout
  module = model_lib.build(cfg, prompt_length=3)
  frozen = restore.restore_frozen(module, path)  # strict: every name and shape must agree
  expected = restore.expected_frozen(module)
  flat = traverse_util.flatten_dict(frozen, sep="/")
  assert set(flat) == set(expected)
  for name, value in flat.items():
    assert value.shape == expected[name].shape, name
  logits = _forward(module, frozen)
  assert logits.shape == (2, 5, cfg.vocab_size) and np.isfinite(np.asarray(logits)).all()


def test_tensorstore_values_and_only_target_is_read():
  params = t5x.load_t5x_params(lib.TENSORSTORE)
  np.testing.assert_array_equal(np.asarray(params["token_embedder"]["embedding"]), np.load(lib.EMBEDDING_NPY))
  assert set(params) == {"token_embedder", "encoder", "decoder"}  # no Adafactor v/v_row/v_col, no step
  ckpt = t5x.open_checkpoint(lib.TENSORSTORE)
  assert ckpt.params_root == "optimizer/target"
  assert "optimizer/state/param_states/decoder/decoder_norm/scale/v" in ckpt.leaves
  # A small array stored inline next to the zarr ones.
  np.testing.assert_array_equal(params["encoder"]["relpos_bias"]["rel_embedding"],
                                t5x.read_variable(lib.TENSORSTORE, "target/encoder/relpos_bias/rel_embedding".replace("target", "optimizer/target")))


def test_msgpack_inline_values():
  ckpt = t5x.open_checkpoint(lib.MSGPACK)
  query = t5x.read_variable(lib.MSGPACK, "encoder/layers_0/attention/query/kernel")
  assert query.shape == (8, 12) and query.dtype == np.float32
  np.testing.assert_array_equal(query, ckpt.leaves["optimizer/target/encoder/layers_0/attention/query/kernel"].value())
  np.testing.assert_array_equal(t5x.read_variable(lib.MSGPACK, "decoder.decoder_norm.scale"), np.ones(8, np.float32))


@pytest.mark.parametrize("mesh_shape,path,cfg", [((2, 4), lib.MSGPACK, lib.MSGPACK_CFG),  # 4 heads
                                                  ((4, 2), lib.TENSORSTORE, lib.TENSORSTORE_CFG)])
def test_sharded_restore_reads_each_shard_and_casts(mesh_shape, path, cfg):
  if jax.device_count() < 8:
    pytest.skip("needs 8 host devices (XLA_FLAGS=--xla_force_host_platform_device_count=8)")
  mesh = partitioning.create_mesh(mesh_shape)
  rules = partitioning.logical_rules()
  module = model_lib.build(cfg, prompt_length=3)
  frozen = restore.restore_frozen(module, path, mesh=mesh, rules=rules, dtype=jnp.bfloat16)
  leaves = t5x.open_checkpoint(path).params()
  shardings = traverse_util.flatten_dict(params_lib.shardings(module, mesh, rules)[1], sep="/")
  split_somewhere = False
  for name, array in traverse_util.flatten_dict(frozen, sep="/").items():
    # Matrices in the frozen dtype; norm scales and relative-position tables stay float32.
    dtype = jnp.bfloat16 if name.rsplit("/", 1)[-1] in ("kernel", "embedding") else jnp.float32
    assert array.dtype == dtype, name
    assert array.sharding == shardings[name], name
    for shard in array.addressable_shards:
      want = leaves[name].read(shard.index).astype(dtype)
      np.testing.assert_array_equal(np.asarray(shard.data), want, err_msg=name)
      split_somewhere |= shard.data.shape != array.shape
  assert split_somewhere  # vocab / heads / mlp really are split over `model`
  emb = frozen["token_embedder"]["embedding"]
  assert emb.addressable_shards[0].data.shape == (32128 // mesh_shape[1], cfg.emb_dim)
  logits = _forward(module, frozen)
  assert np.isfinite(np.asarray(logits)).all()


def test_legacy_orbax_fixture():
  ckpt = t5x.open_checkpoint(lib.ORBAX_NON_T5)
  assert ckpt.layout == "orbax"
  assert set(ckpt.leaves) == {"_optimizer/state/param_states/bias", "_optimizer/state/param_states/kernel",
                              "_optimizer/state/param_states/step", "_optimizer/state/step"}
  kernel = ckpt.leaves["_optimizer/state/param_states/kernel"]
  with pytest.raises(ValueError, match="metadata is missing.*incomplete"):
    kernel.value()  # the distributed fixture lacks its .zarray files
  reference = t5x.read_variable(lib.TENSORSTORE_NON_T5, "optimizer/state/param_states/kernel")
  assert reference.shape == (10, 5) and reference.dtype == np.float64
  np.testing.assert_array_equal(kernel.assume((10, 5), np.float64).value(), reference)
  with pytest.raises(ValueError, match="no parameters"):
    ckpt.params()  # a format fixture: no target/ subtree


def test_non_t5_tensorstore_without_zarray_uses_spec_metadata():
  ckpt = t5x.open_checkpoint(lib.TENSORSTORE_NON_T5)
  assert ckpt.layout == "tensorstore"
  assert ckpt.leaves["optimizer/state/param_states/bias"].value().shape == (5,)
  assert int(ckpt.leaves["optimizer/state/step"].value()) == 1


def test_orbax_ocdbt_checkpoint(tmp_path):
  import orbax.checkpoint as ocp
  params = jax.tree.map(np.asarray, t5x.load_t5x_params(lib.TENSORSTORE))
  path = str(tmp_path / "1")
  ocp.PyTreeCheckpointer().save(path, {"target": params, "state": {"step": np.asarray(3, np.int32)}})
  assert t5x.detect_layout(path) == "ocdbt"
  module = model_lib.build(lib.TENSORSTORE_CFG, prompt_length=3)
  mesh = partitioning.create_mesh((4, 2)) if jax.device_count() >= 8 else None
  frozen = restore.restore_frozen(module, path, mesh=mesh, dtype=jnp.bfloat16)
  got = traverse_util.flatten_dict(frozen, sep="/")
  for name, value in traverse_util.flatten_dict(params, sep="/").items():
    dtype = jnp.bfloat16 if name.rsplit("/", 1)[-1] in ("kernel", "embedding") else jnp.float32
    np.testing.assert_array_equal(np.asarray(got[name]), value.astype(dtype), err_msg=name)


def test_write_t5x_round_trip(tmp_path):
  params = jax.tree.map(np.asarray, t5x.load_t5x_params(lib.MSGPACK))
  out = t5x.write_t5x(str(tmp_path / "checkpoint_0"), params, step=0)
  assert t5x.detect_layout(out) == "tensorstore"
  back = traverse_util.flatten_dict(t5x.load_t5x_params(out), sep="/")
  for name, value in traverse_util.flatten_dict(params, sep="/").items():
    np.testing.assert_array_equal(np.asarray(back[name]), value, err_msg=name)
  with pytest.raises(FileExistsError):
    t5x.write_t5x(out, params)


def test_errors_are_one_line(tmp_path):
  with pytest.raises(FileNotFoundError, match="no T5X checkpoint"):
    t5x.open_checkpoint(str(tmp_path))
  with pytest.raises(KeyError, match="did you mean"):
    t5x.read_variable(lib.MSGPACK, "encoder/layers_0/attention/qury/kernel")


def test_gcs_paths_use_the_gcs_driver():
  assert _store.kvstore("gs://t5-data/pretrained_models/t5x/ckpt") == {
      "driver": "gcs", "bucket": "t5-data", "path": "pretrained_models/t5x/ckpt"}
  spec = {"driver": "zarr", "kvstore": {"driver": "gfile", "path": "target.encoder.encoder_norm.scale"}}
  local = t5x._localize(spec, "gs://bucket/run/checkpoint_5")
  assert local["kvstore"] == {"driver": "gcs", "bucket": "bucket",
                              "path": "run/checkpoint_5/target.encoder.encoder_norm.scale/"}


def test_chunked_msgpack_arrays_are_joined():
  whole = np.arange(12, dtype=np.float32).reshape(3, 4)
  chunked = {"__msgpack_chunked_array__": True, "shape": {"0": 3, "1": 4},
             "chunks": {"0": whole.reshape(-1)[:5], "1": whole.reshape(-1)[5:]}}
  np.testing.assert_array_equal(t5x._unchunk({"a": chunked})["a"], whole)
