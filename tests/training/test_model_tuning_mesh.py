"""Model tuning on a mesh: the step equals the one-device step with T5X's 1-D and 2-D (FSDP)
parameter partitioning, and each device holds the share of the state the footprint says."""
import jax
import numpy as np
import pytest
from flax import traverse_util

from prompt_tuning.model import params as params_lib
from prompt_tuning.model import prompted as model_lib
from prompt_tuning.model import t5
from prompt_tuning.parallel import partitioning
from prompt_tuning.training import footprint
from prompt_tuning.training import optim
from prompt_tuning.training import step as ts
from tests import tiny

# Dimensions of 128 (so kernels have factored statistics) that 8 devices divide.
CFG = tiny.tiny_config(vocab_size=256, emb_dim=128, num_heads=4, head_dim=32, mlp_dim=256)
Q = "encoder/layers_0/attention/query/kernel"


def _flat(tree):
  return traverse_util.flatten_dict(tree, sep="/")


@pytest.fixture(scope="module")
def reference():
  module = model_lib.build(CFG, prompt_length=0)
  params = tiny.random_params(module, seed=1)
  tx = optim.adafactor(learning_rate=1e-3, weight_decay_rate=None, factored=True)
  batch = tiny.random_batch(batch=8, vocab=CFG.vocab_size, seed=3)
  state, stats = jax.jit(lambda s: ts.train_step(s, {}, batch, None, module=module, tx=tx))(
      ts.TrainState.create(params, tx))
  return module, params, tx, batch, jax.tree.map(np.asarray, state), float(stats["loss"])


@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("mesh_shape", [(8, 1), (4, 2), (2, 4)])
def test_a_model_tuning_step_is_the_same_on_every_mesh(reference, mesh_shape, dims):
  module, params, tx, batch, want, want_loss = reference
  mesh = partitioning.create_mesh(mesh_shape)
  rules = partitioning.logical_rules(parameter_partitioning_dims=dims)
  trainable_sh, frozen_sh = params_lib.shardings(module, mesh, rules, [".*"])
  state, state_sh = ts.create_sharded(jax.tree.map(np.asarray, params), tx, mesh, trainable_sh)
  data, model = mesh_shape
  q = _flat(state.params)[Q]  # [embed, joined_kv]: heads over `model`, and `embed` over `data` in 2-D
  assert q.addressable_shards[0].data.shape == (128 // (data if dims == 2 else 1), 128 // model)
  need = footprint.step_bytes(module, tx, mesh, rules, [".*"])
  held = lambda tree: sum(x.addressable_shards[0].data.nbytes for x in jax.tree.leaves(tree))
  assert need["trainable_weights"] == held(state.params) and need["optimizer_state"] == held(state.opt_state)
  step = ts.partitioned_train_step(module, tx, mesh, rules, frozen_sh, state_sh)
  new, stats = step(state, {}, batch, None)
  np.testing.assert_allclose(float(stats["loss"]), want_loss, rtol=1e-5)
  got = _flat(jax.tree.map(np.asarray, new.params))
  for name, value in _flat(want.params).items():
    np.testing.assert_allclose(got[name], value, rtol=0, atol=1e-6, err_msg=name)
  row = _flat(new.opt_state[0].v_row)[Q]
  np.testing.assert_allclose(np.asarray(row), _flat(want.opt_state[0].v_row)[Q], rtol=1e-5)


def test_two_dimensional_partitioning_divides_the_state_by_the_whole_mesh():
  module = model_lib.build(t5.config_for("xl"), prompt_length=0)
  tx = optim.adafactor(learning_rate=1e-3, weight_decay_rate=None, factored=True)
  mesh = partitioning.create_mesh((4, 2))
  one_d = footprint.step_bytes(module, tx, mesh, partitioning.logical_rules(), [".*"])
  two_d = footprint.step_bytes(module, tx, mesh, partitioning.logical_rules(parameter_partitioning_dims=2), [".*"])
  total = 2_849_757_184 * 4  # T5 1.1 XL's parameters, float32
  assert total / 2 < one_d["trainable_weights"] < total / 2 * 1.01  # heads / MLP / vocab over `model`
  assert total / 8 <= two_d["trainable_weights"] < total / 8 * 1.01  # and `embed` over `data`
  assert two_d["frozen_weights"] == 0 and two_d["gradients"] == two_d["trainable_weights"]
  assert one_d["optimizer_state"] < 0.01 * one_d["trainable_weights"]  # factored: rows and columns
  with pytest.raises(ValueError, match=r"would hold 10\.6 GiB of weights and train state \(trainable "
                                       r"weights 5\.3, gradients 5\.3, optimizer state 0\.0 GiB\) .* has 8\.0 GiB"):
    footprint.check_fits(one_d, 8 * 2 ** 30)
  footprint.check_fits(two_d, 8 * 2 ** 30)  # 2.7 GiB


def test_a_mesh_that_cannot_split_a_weight_is_named():
  module = model_lib.build(tiny.tiny_config(emb_dim=4, num_heads=2, head_dim=2), prompt_length=0)
  mesh = partitioning.create_mesh((8, 1))
  rules = partitioning.logical_rules(parameter_partitioning_dims=2)
  shapes = jax.eval_shape(lambda: tiny.random_params(module))
  with pytest.raises(ValueError, match=r"\[.*4.*\] cannot be split 8 ways over mesh axis data"):
    partitioning.check_divisible(shapes, model_lib.merge(*params_lib.shardings(module, mesh, rules)))
  partitioning.check_divisible(shapes, model_lib.merge(*params_lib.shardings(module, mesh, partitioning.logical_rules())))
