"""The prompt-only train step: what it updates, the optimizer's exact rule, and mesh invariance."""
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from prompt_tuning.model import params as params_lib
from prompt_tuning.model import prompted as model_lib
from prompt_tuning.model import prompts
from prompt_tuning.parallel import partitioning
from prompt_tuning.training import optim
from prompt_tuning.training import step as ts
from tests import tiny


def _setup(cfg=None, prompt_length=3, batch_size=4, seed=0):
  cfg = cfg or tiny.tiny_config()
  module = model_lib.build(cfg, prompt_length=prompt_length)
  prompt, frozen = model_lib.split(tiny.random_params(module, seed))
  prompt = model_lib.init_prompt(module, prompts.sampled_vocab(), jax.random.PRNGKey(1), frozen)
  batch = tiny.random_batch(batch=batch_size, vocab=cfg.vocab_size, seed=seed)
  return module, prompt, frozen, batch


def _reference_adafactor(p, grads, lr=0.3, wd=1e-5, offset=0):
  """Hand-written T5X Adafactor (no momentum, unfactored, clipping 1, decoupled decay)."""
  v = np.zeros_like(p)
  for t, g in enumerate(grads):
    decay = 1.0 - (t - offset + 1.0) ** -0.8
    v = decay * v + (1 - decay) * (g * g + 1e-30)
    u = g / np.sqrt(v)
    u = u / max(1.0, np.sqrt(np.mean(u * u)) / 1.0)
    p = (1 - wd) * p - lr * u
  return p


def test_adafactor_matches_hand_computed_t5x_update():
  rng = np.random.RandomState(0)
  p0 = rng.randn(150, 200).astype(np.float64)  # both dims >= 128: must stay unfactored
  grads = [rng.randn(150, 200) * s for s in (1.0, 0.01, 3.0, 0.5)]
  tx = optim.adafactor()
  params = jnp.asarray(p0, jnp.float32)
  state = tx.init(params)
  assert any(x.shape == (150, 200) for x in jax.tree.leaves(state))  # full second moment
  for g in grads:
    updates, state = tx.update(jnp.asarray(g, jnp.float32), state, params)
    params = optax.apply_updates(params, updates)
  np.testing.assert_allclose(np.asarray(params), _reference_adafactor(p0, grads), rtol=2e-5, atol=2e-6)


def test_adafactor_step_offset_shifts_the_decay_schedule():
  rng = np.random.RandomState(1)
  p0 = rng.randn(4, 6)
  grads = [rng.randn(4, 6) for _ in range(3)]
  tx = optim.adafactor(step_offset=-1000)  # as if 1000 steps had already been taken
  params = jnp.asarray(p0, jnp.float32)
  state = tx.init(params)
  for g in grads:
    updates, state = tx.update(jnp.asarray(g, jnp.float32), state, params)
    params = optax.apply_updates(params, updates)
  np.testing.assert_allclose(np.asarray(params), _reference_adafactor(p0, grads, offset=-1000), rtol=2e-5, atol=1e-5)
  fresh = _reference_adafactor(p0, grads)
  assert not np.allclose(fresh, np.asarray(params))


def test_only_the_prompt_changes_and_only_it_has_optimizer_state():
  module, prompt, frozen, batch = _setup(tiny.tiny_config(dropout_rate=0.1))
  before = jax.tree.map(np.array, frozen)
  tx = optim.adafactor()
  state = ts.TrainState.create(prompt, tx)
  opt_leaves = jax.tree.leaves(state.opt_state)
  assert max(x.size for x in opt_leaves) == 3 * 16  # the prompt's second moment...
  assert sum(x.size for x in opt_leaves) <= 3 * 16 + 4  # ...and only scalars besides
  step = jax.jit(lambda s, f, b, r: ts.train_step(s, f, b, r, module=module, tx=tx))
  for _ in range(3):
    state, stats = step(state, frozen, batch, jax.random.PRNGKey(0))
  assert int(state.step) == 3
  jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.array, frozen))
  assert not np.allclose(state.params["prompt"]["prompt"], prompt["prompt"]["prompt"])
  assert np.isfinite(float(stats["loss"]))


def _count_dots(fn, *args):
  return str(jax.make_jaxpr(fn)(*args)).count("dot_general")


def test_no_weight_gradients_are_computed():
  """The step's matmuls are those of forward + input-gradients, not also weight-gradients."""
  module, prompt, frozen, batch = _setup()
  loss = lambda p, f: ts.loss_fn(p, f, batch, None, module=module)[0]
  forward = _count_dots(loss, prompt, frozen)
  prompt_only = _count_dots(jax.grad(loss), prompt, frozen)
  everything = _count_dots(jax.grad(loss, argnums=(0, 1)), prompt, frozen)
  encoder_kernels = 2 * 7  # 2 layers x (query, key, value, out, wi_0, wi_1, wo)
  assert everything - prompt_only >= encoder_kernels  # no weight-gradient matmuls at all
  assert forward < prompt_only < 3 * forward


def test_loss_decreases_when_training_a_prompt():
  module, prompt, frozen, batch = _setup(prompt_length=4)
  tx = optim.adafactor(learning_rate=0.3)
  state = ts.TrainState.create(prompt, tx)
  step = jax.jit(lambda s: ts.train_step(s, frozen, batch, None, module=module, tx=tx))
  losses = []
  for _ in range(15):
    state, stats = step(state)
    losses.append(float(stats["loss"]))
  assert losses[-1] < 0.9 * losses[0]


def test_microbatches_accumulate_to_the_full_batch_gradient():
  module, prompt, frozen, batch = _setup(batch_size=8)
  tx = optim.adafactor()
  state = ts.TrainState.create(prompt, tx)
  run = lambda n: jax.jit(lambda s: ts.train_step(s, frozen, batch, None, module=module, tx=tx,
                                                   num_microbatches=n))(state)
  (s1, st1), (s4, st4) = run(1), run(4)
  np.testing.assert_allclose(st1["loss"], st4["loss"], rtol=1e-5)
  np.testing.assert_allclose(s1.params["prompt"]["prompt"], s4.params["prompt"]["prompt"], rtol=1e-5, atol=1e-6)


def test_frozen_weights_in_bfloat16_give_the_same_bf16_forward():
  cfg = tiny.tiny_config(dtype="bfloat16")
  module, prompt, frozen, batch = _setup(cfg)
  half = model_lib.cast_frozen(frozen, jnp.bfloat16)
  a = ts.loss_fn(prompt, frozen, batch, None, module=module)[0]
  b = ts.loss_fn(prompt, half, batch, None, module=module)[0]
  assert half["token_embedder"]["embedding"].dtype == jnp.bfloat16
  np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mesh_shape", [(8, 1), (4, 2), (2, 4), (1, 1)])
def test_train_step_is_the_same_on_every_mesh(mesh_shape):
  assert jax.device_count() == 8, "tests/conftest.py sets 8 host devices"
  cfg = tiny.tiny_config(num_heads=4)
  module, prompt, frozen, batch = _setup(cfg, batch_size=8)
  devices = jax.devices()[:mesh_shape[0] * mesh_shape[1]]
  mesh = partitioning.create_mesh(mesh_shape, devices)
  rules = partitioning.logical_rules()
  tx = optim.adafactor()
  _, frozen_sh = params_lib.shardings(module, mesh, rules)
  state = ts.TrainState.create(prompt, tx)
  state_sh = ts.state_shardings(state, mesh)
  frozen_dev = jax.device_put(frozen, frozen_sh)
  if mesh_shape[1] > 1:  # the model axis really splits the weights
    q = frozen_dev["encoder"]["layers_0"]["attention"]["query"]["kernel"]
    assert q.addressable_shards[0].data.shape == (16, 16 // mesh_shape[1])
  ref_state, ref_stats = jax.jit(lambda s: ts.train_step(s, frozen, batch, None, module=module, tx=tx))(
      ts.TrainState.create(prompt, tx))
  step = ts.partitioned_train_step(module, tx, mesh, rules, frozen_sh, state_sh)
  new, stats = step(state, frozen_dev, batch, None)  # donates `state`
  loss = float(stats["loss"])
  result = np.asarray(new.params["prompt"]["prompt"])
  np.testing.assert_allclose(loss, float(ref_stats["loss"]), rtol=1e-5)
  np.testing.assert_allclose(result, np.asarray(ref_state.params["prompt"]["prompt"]), atol=1e-5)


def test_mesh_shape_errors_are_clear():
  with pytest.raises(ValueError, match=r"needs 6 devices but 8 are available"):
    partitioning.create_mesh((3, 2))
  assert partitioning.create_mesh((-1, 2)).shape == {"data": 4, "model": 2}


def test_core_imports_without_tensorflow():
  code = ("import sys, prompt_tuning.model.t5, prompt_tuning.model.prompted, prompt_tuning.model.prompts, "
          "prompt_tuning.model.decoding, prompt_tuning.training.step, prompt_tuning.parallel.partitioning, "
          "prompt_tuning.training.optim, prompt_tuning.checkpoints.restore, prompt_tuning.checkpoints.state, "
          "prompt_tuning.config.cli; "
          "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'seqio', 'tensorflow_datasets')]; "
          "print(bad); assert not bad")
  subprocess.run([sys.executable, "-c", code], check=True)
