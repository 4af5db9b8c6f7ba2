"""Adafactor with T5X's semantics: factored second moments against a hand-written NumPy
Adafactor, per-layer statistics for scanned layers, and the pretrained state read from T5X."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import serialization
from flax import traverse_util

from prompt_tuning.checkpoints import t5x
from prompt_tuning.model import layer_stack
from prompt_tuning.model import params as params_lib
from prompt_tuning.model import prompted as model_lib
from prompt_tuning.training import optim
from tests.checkpoints import ckpt_testlib as lib


class NumpyAdafactor:
  """Adafactor (Shazeer & Stern 2018, Algorithm 4) as T5X configures it, written from the paper:
  a matrix whose smaller dimension has >= 128 entries keeps row and column means of g^2 + eps and
  estimates V as R C / mean(R); anything else keeps V whole. No momentum, update clipping at RMS
  1, the step's decay 1 - (t + 1)^-0.8 with t counted from `step`."""

  def __init__(self, lr, wd=None, param_scale=False, step=0, min_dim=128):
    self.lr, self.wd, self.param_scale, self.t, self.min_dim = lr, wd, param_scale, step, min_dim
    self.stats = {}

  def factored(self, p):
    return p.ndim == 2 and min(p.shape) >= self.min_dim

  def update(self, name, p, g):
    decay = 1.0 - (self.t + 1.0) ** -0.8
    g2 = g * g + 1e-30
    if self.factored(p):
      rows_axis = 0 if p.shape[0] <= p.shape[1] else 1  # the smaller dimension (the first if equal)
      r, c = self.stats.get(name, (0.0, 0.0))
      r = decay * r + (1 - decay) * g2.mean(axis=1 - rows_axis)  # one value per row
      c = decay * c + (1 - decay) * g2.mean(axis=rows_axis)  # one value per column
      self.stats[name] = (r, c)
      v = np.outer(r, c) / r.mean() if rows_axis == 0 else np.outer(c, r) / r.mean()
    else:
      v = decay * self.stats.get(name, 0.0) + (1 - decay) * g2
      self.stats[name] = v
    u = g / np.sqrt(v)
    u = u / max(1.0, np.sqrt(np.mean(u * u)))
    scale = self.lr * (max(np.sqrt(np.mean(p * p)), 1e-3) if self.param_scale else 1.0)
    return ((1 - self.wd) * p if self.wd else p) - scale * u

  def step(self, params, grads):
    out = {n: self.update(n, params[n], grads[n]) for n in params}
    self.t += 1
    return out


def _run(tx, params, grads_per_step):
  params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
  state = tx.init(params)
  for grads in grads_per_step:
    updates, state = tx.update(jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), grads), state, params)
    params = optax.apply_updates(params, updates)
  return jax.tree.map(np.asarray, params), state


SHAPES = {"wide": (130, 200), "tall": (200, 130), "square": (160, 160), "vector": (300,), "small": (4, 300)}


def _problem(seed=0, steps=4):
  rng = np.random.RandomState(seed)
  params = {n: rng.randn(*s) for n, s in SHAPES.items()}
  grads = [{n: rng.randn(*s) * scale for n, s in SHAPES.items()} for scale in (1.0, 0.01, 3.0, 0.5)[:steps]]
  return params, grads


@pytest.mark.parametrize("param_scale", [False, True])
def test_factored_adafactor_matches_the_numpy_reference(param_scale):
  params, grads = _problem()
  ours, state = _run(optim.adafactor(learning_rate=1e-3, weight_decay_rate=None, factored=True,
                                     multiply_by_parameter_scale=param_scale), params, grads)
  factored = state[0]
  assert factored.v_row["wide"].shape == (130,) and factored.v_col["wide"].shape == (200,)
  assert factored.v_row["tall"].shape == (130,) and factored.v_col["tall"].shape == (200,)
  assert factored.v["square"].shape == (1,) and factored.v["small"].shape == (4, 300)
  reference = NumpyAdafactor(1e-3, param_scale=param_scale)
  expected = params
  for g in grads:
    expected = reference.step(expected, g)
  for name in SHAPES:
    np.testing.assert_allclose(ours[name], expected[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_prompt_tuning_numerics_are_optax_adafactor_bit_for_bit():
  """The default (unfactored, wd 1e-5, lr 0.3) is exactly what the project used before."""
  params, grads = _problem(1)
  tx = optax.adafactor(learning_rate=0.3, min_dim_size_to_factor=128, decay_rate=0.8, decay_offset=0,
                       multiply_by_parameter_scale=False, clipping_threshold=1.0, momentum=None,
                       weight_decay_rate=1e-5, eps=1e-30, factored=False)
  for ours, theirs in zip(jax.tree.leaves(_run(optim.adafactor(), params, grads)),
                          jax.tree.leaves(_run(tx, params, grads))):
    assert np.asarray(ours).tobytes() == np.asarray(theirs).tobytes()


def test_scanned_layers_keep_per_layer_statistics_clipping_and_scale():
  """A stacked [layers, ...] parameter is updated as its layers would be one by one."""
  rng = np.random.RandomState(2)
  unrolled = {f"layers_{i}": {"wi": {"kernel": rng.randn(130, 140) * (i + 1)},
                              "norm": {"scale": rng.randn(140) * 10 ** i}} for i in range(3)}
  grads = [{f"layers_{i}": {"wi": {"kernel": rng.randn(130, 140) * 10 ** i},
                            "norm": {"scale": rng.randn(140) * (i + 1)}} for i in range(3)} for _ in range(3)]
  tx = optim.adafactor(learning_rate=1e-2, factored=True, multiply_by_parameter_scale=True)
  want, _ = _run(tx, {"encoder": unrolled}, [{"encoder": g} for g in grads])
  got, state = _run(tx, layer_stack.stack_layers({"encoder": unrolled}),
                    [layer_stack.stack_layers({"encoder": g}) for g in grads])
  assert state[0].v_row["encoder"]["layers"]["wi"]["kernel"].shape == (3, 130)
  want = traverse_util.flatten_dict(want, sep="/")
  for name, value in traverse_util.flatten_dict(layer_stack.unstack_layers(got), sep="/").items():
    np.testing.assert_allclose(value, want[name], rtol=1e-5, atol=1e-6, err_msg=name)


# ----------------------------------------------------------------------------- pretrained state


def _model(cfg, scan=False):
  return model_lib.build(dataclasses.replace(cfg, scan_layers=scan), prompt_length=0)


def _zero_state(module, tx):
  params = jax.tree.map(lambda s: jnp.zeros(s.shape, jnp.float32),
                        jax.tree.map(lambda b: b.value, params_lib.abstract_params(module),
                                     is_leaf=lambda x: hasattr(x, "value")))
  return tx.init(params)


@pytest.mark.parametrize("scan", [False, True])
def test_the_tensorstore_fixtures_adafactor_state_is_restored_as_stored(scan):
  tx = optim.adafactor(learning_rate=1e-3, weight_decay_rate=None, factored=True)
  module = _model(lib.TENSORSTORE_CFG, scan)
  restored = optim.restore_t5x_state(_zero_state(module, tx), lib.TENSORSTORE)[0]
  leaves = t5x.open_checkpoint(lib.TENSORSTORE).leaves
  assert int(restored.count) == int(leaves["optimizer/state/step"].value()) == 3
  v = traverse_util.flatten_dict(layer_stack.unstack_layers(jax.tree.map(np.asarray, restored.v)), sep="/")
  assert len(v) == 52  # every parameter of the fixture (its dimensions are below 128: all unfactored)
  for name, value in v.items():
    stored = leaves[f"optimizer/state/param_states/{name}/v"].value()
    assert value.tobytes() == stored.astype(np.float32).tobytes(), name
  assert np.abs(v["encoder/relpos_bias/rel_embedding"]).max() > 0


def _write_msgpack_checkpoint(path, params, slots, step):
  """A T5X checkpoint as T5X writes its msgpack form (flax.serialization), with Adafactor state."""
  tree = {"optimizer": {"target": params, "state": {"step": np.asarray(step, np.int32),
                                                    "param_states": slots}}}
  path.mkdir()
  (path / "checkpoint").write_bytes(serialization.msgpack_serialize(tree))
  return str(path)


def _factored_problem():
  cfg = dataclasses.replace(lib.TENSORSTORE_CFG, vocab_size=256, emb_dim=128, num_heads=2, head_dim=64, mlp_dim=256,
                                    num_encoder_layers=1, num_decoder_layers=1)
  module = _model(cfg)
  tx = optim.adafactor(factored=True)
  abstract = jax.eval_shape(lambda: _zero_state(module, tx))[0]
  rng = np.random.RandomState(3)
  slots = {}
  for slot in optim.SLOTS:
    for name, x in traverse_util.flatten_dict(getattr(abstract, slot), sep="/").items():
      slots[f"{name}/{slot}"] = rng.rand(*x.shape).astype(np.float32)
  return module, tx, traverse_util.unflatten_dict(slots, sep="/")


def test_factored_statistics_are_restored_and_a_mismatch_is_refused(tmp_path):
  module, tx, slots = _factored_problem()
  path = _write_msgpack_checkpoint(tmp_path / "checkpoint_1000000", {}, slots, 1_000_000)
  restored = optim.restore_t5x_state(_zero_state(module, tx), path)[0]
  assert int(restored.count) == 1_000_000
  q = "encoder/layers_0/attention/query/kernel"
  row = traverse_util.flatten_dict(restored.v_row, sep="/")[q]
  assert row.shape == (128,) and np.asarray(row).tobytes() == slots["encoder"]["layers_0"]["attention"][
      "query"]["kernel"]["v_row"].tobytes()
  assert traverse_util.flatten_dict(restored.v, sep="/")[q].shape == (1,)
  # the unfactored norms' v are restored too
  norm = "encoder/encoder_norm/scale"
  np.testing.assert_array_equal(traverse_util.flatten_dict(restored.v, sep="/")[norm],
                                slots["encoder"]["encoder_norm"]["scale"]["v"])
  with pytest.raises(ValueError, match=r"the Adafactor state of .* does not fit this optimizer: v is \(1,\) "
                                       r"there but \(128, 128\) here"):
    optim.restore_t5x_state(_zero_state(module, optim.adafactor(factored=False)), path)


def test_a_checkpoint_without_optimizer_state_is_refused(tmp_path):
  module = _model(lib.TENSORSTORE_CFG)
  tx = optim.adafactor(factored=True)
  params = traverse_util.flatten_dict(jax.tree.map(np.asarray, _zero_state(module, tx)[0].v), sep="/")
  path = t5x.write_t5x(str(tmp_path / "checkpoint_0"), traverse_util.unflatten_dict(params, sep="/"))
  with pytest.raises(ValueError, match="holds no Adafactor state .*RESTORE_OPTIMIZER_STATE = False"):
    optim.restore_t5x_state(_zero_state(module, tx), path)
