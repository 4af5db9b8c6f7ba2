"""The train step with scanned layers equals the unrolled one: one device and a (4, 2) mesh, float32."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_tuning.model import layer_stack
from prompt_tuning.model import params as params_lib
from prompt_tuning.model import prompted as model_lib
from prompt_tuning.model import prompts
from prompt_tuning.parallel import partitioning
from prompt_tuning.training import optim
from prompt_tuning.training import step as ts
from tests import tiny


CFG = tiny.tiny_config(num_heads=4, num_encoder_layers=3)


@functools.lru_cache(maxsize=None)
def unrolled_run():
  """(prompt, frozen weights, batches, tx, losses and final state of three unrolled steps)."""
  unrolled = model_lib.build(CFG, prompt_length=3)
  prompt, frozen = model_lib.split(tiny.random_params(unrolled))
  prompt = model_lib.init_prompt(unrolled, prompts.sampled_vocab(), jax.random.PRNGKey(1), frozen)
  batches = [tiny.random_batch(batch=8, seed=s) for s in range(3)]
  tx = optim.adafactor()
  step = jax.jit(lambda s, b: ts.train_step(s, frozen, b, None, module=unrolled, tx=tx))
  state, losses = ts.TrainState.create(prompt, tx), []
  for batch in batches:
    state, stats = step(state, batch)
    losses.append(float(stats["loss"]))
  return prompt, frozen, batches, tx, losses, state


@pytest.mark.parametrize("mesh_shape,remat", [((1, 1), "none"), ((4, 2), "full")])
def test_scanned_train_steps_equal_unrolled_ones(mesh_shape, remat):
  prompt, frozen, batches, tx, ref_losses, ref_state = unrolled_run()
  scanned = model_lib.build(CFG.replace(scan_layers=True, remat=remat), prompt_length=3)
  mesh = partitioning.create_mesh(mesh_shape, jax.devices()[:mesh_shape[0] * mesh_shape[1]])
  rules = partitioning.logical_rules()
  _, frozen_sh = params_lib.shardings(scanned, mesh, rules)
  stacked = jax.device_put(layer_stack.stack_layers(frozen), frozen_sh)
  if mesh_shape[1] > 1:  # every device holds all layers, and its part of each head dimension
    q = stacked["encoder"]["layers"]["attention"]["query"]["kernel"]
    assert q.addressable_shards[0].data.shape == (3, 16, 16 // mesh_shape[1])
  state = ts.TrainState.create(jax.tree.map(jnp.copy, prompt), tx)  # the step donates it
  state_sh = ts.state_shardings(state, mesh)
  step = ts.partitioned_train_step(scanned, tx, mesh, rules, frozen_sh, state_sh)
  state, losses = jax.device_put(state, state_sh), []
  for batch in batches:
    state, stats = step(state, stacked, batch, None)
    losses.append(float(stats["loss"]))
  np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
  assert len(set(losses)) == 3  # the prompt moved between steps
  np.testing.assert_allclose(np.asarray(state.params["prompt"]["prompt"]),
                             np.asarray(ref_state.params["prompt"]["prompt"]), atol=1e-5)
