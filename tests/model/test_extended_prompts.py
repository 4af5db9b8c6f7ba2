"""Methods that compute the prompt (multi-task, reparameterized), pinned to the plain model."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_tuning.config.errors import ConfigError
from prompt_tuning.config.errors import UsageError
from prompt_tuning.model import prompted as model_lib
from prompt_tuning.model import prompts as prompts_lib
from prompt_tuning.model.extended import multitask
from prompt_tuning.model.extended import reparam
from tests import tiny

CFG = tiny.tiny_config()
P, T = 4, 3


def _plain_logits(frozen, prompt, batch):
  plain = model_lib.build(CFG, prompt_length=P)
  return tiny.apply(plain, model_lib.merge({"prompt": {"prompt": prompt}}, frozen), batch)


def _method_params(module, seed=1):
  params = tiny.random_params(module, seed)
  return model_lib.split(params, model_lib.trainable_patterns(module))


def _with_sentinel(batch, task_ids, vocab_size):
  """`task_index_*` inputs: <extra_id_t> (id vocab_size - 1 - t) before each row's tokens."""
  sentinel = vocab_size - 1 - np.asarray(task_ids)
  tokens = np.concatenate([sentinel[:, None], np.asarray(batch["encoder_input_tokens"])], 1)
  return {**batch, "encoder_input_tokens": jnp.asarray(tokens, jnp.int32)}


def test_zero_task_parts_under_addition_equal_the_plain_prompt():
  module = model_lib.build(CFG, P, multitask_prompt=multitask.multitask_prompt(T, "add", task_source="prompt_ids"))
  trainable, frozen = _method_params(module)
  assert sorted(trainable) == ["multitask_prompt"] and sorted(trainable["multitask_prompt"]) == ["shared", "tasks"]
  shared = jax.random.normal(jax.random.PRNGKey(2), (P, CFG.emb_dim))
  trainable = {"multitask_prompt": {"shared": shared, "tasks": jnp.zeros((T, P, CFG.emb_dim))}}
  batch = {**tiny.random_batch(), "prompt_ids": jnp.asarray([0, 2, 1, 2], jnp.int32)}
  got = tiny.apply(module, model_lib.merge(trainable, frozen), batch)
  plain = {k: v for k, v in batch.items() if k != "prompt_ids"}
  np.testing.assert_array_equal(got, _plain_logits(frozen, shared, plain))


@pytest.mark.parametrize("combine", multitask.COMBINES)
def test_each_example_gets_its_tasks_effective_prompt(combine):
  """Reading the task from the task-index sentinel (then dropped) gives, row by row, the plain
  model's logits with that task's exported prompt on the inputs without the sentinel."""
  method = multitask.MultiTaskPrompt(T, combine, task_source="sentinel", vocab_size=CFG.vocab_size)
  module = model_lib.build(CFG, P, multitask_prompt=method)
  trainable, frozen = _method_params(module)
  rng = jax.random.PRNGKey(3)
  trainable = {"multitask_prompt": jax.tree.map(  # away from the initial values
      lambda x: x + 0.5 * jax.random.normal(rng, x.shape), trainable["multitask_prompt"])}
  params = model_lib.merge(trainable, frozen)
  table = model_lib.exported_prompt(module, trainable)
  assert table.shape == (T, P, CFG.emb_dim)
  batch, ids = tiny.random_batch(), np.asarray([2, 0, 1, 2])
  got = tiny.apply(module, params, _with_sentinel(batch, ids, CFG.vocab_size))
  want = np.stack([_plain_logits(frozen, table[t], batch)[i] for i, t in enumerate(ids)])
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
  shared, own = trainable["multitask_prompt"]["shared"], trainable["multitask_prompt"].get("tasks")
  if combine == "add":
    np.testing.assert_allclose(table[1], shared + own[1], rtol=1e-6)
  elif combine == "concat":
    np.testing.assert_array_equal(table[1], np.concatenate([shared, own[1]]))
  else:
    kernel, bias = trainable["multitask_prompt"]["kernel"], trainable["multitask_prompt"]["bias"]
    np.testing.assert_allclose(table[1], shared @ kernel[1] + bias[1], rtol=1e-5, atol=1e-6)


def test_initial_task_prompts_are_the_shared_prompt():
  frozen = model_lib.split(tiny.random_params(model_lib.build(CFG, P)))[1]
  init = prompts_lib.random_uniform()
  for combine in ("add", "project"):
    module = model_lib.build(CFG, P, multitask_prompt=multitask.multitask_prompt(T, combine))
    trainable = model_lib.init_prompt(module, init, jax.random.PRNGKey(0), frozen)
    table = model_lib.exported_prompt(module, trainable)
    for t in range(T):
      np.testing.assert_array_equal(table[t], trainable["multitask_prompt"]["shared"])
  module = model_lib.build(CFG, 6, multitask_prompt=multitask.multitask_prompt(T, "concat", task_length=2))
  trainable = model_lib.init_prompt(module, init, jax.random.PRNGKey(0), frozen)["multitask_prompt"]
  assert trainable["shared"].shape == (4, CFG.emb_dim) and trainable["tasks"].shape == (T, 2, CFG.emb_dim)


@pytest.mark.parametrize("form", reparam.FORMS)
def test_reparameterized_prompt_is_its_mlp_and_serves_as_a_plain_prompt(form):
  module = model_lib.build(CFG, P, reparam_prompt=reparam.reparameterized_prompt(form, hidden=8))
  frozen = model_lib.split(tiny.random_params(model_lib.build(CFG, P)))[1]
  trainable = model_lib.init_prompt(module, prompts_lib.random_uniform(), jax.random.PRNGKey(0), frozen)
  p = {"/".join(x.key for x in path): np.asarray(leaf)
       for path, leaf in jax.tree_util.tree_leaves_with_path(trainable["reparam_prompt"])}
  assert sorted(p) == sorted(["theta", "hidden/kernel", "hidden/bias", "output/kernel", "output/bias"] +
                             (["layer_norm/scale", "layer_norm/bias"] if form == "residual" else []))
  mlp = np.tanh(p["theta"] @ p["hidden/kernel"] + p["hidden/bias"]) @ p["output/kernel"] + p["output/bias"]
  if form == "residual":
    centred = mlp - mlp.mean(-1, keepdims=True)
    normed = centred / np.sqrt((centred ** 2).mean(-1, keepdims=True) + 1e-6)
    mlp = p["theta"] + normed * p["layer_norm/scale"] + p["layer_norm/bias"]
  effective = model_lib.exported_prompt(module, trainable)
  np.testing.assert_allclose(effective, mlp, rtol=1e-5, atol=1e-5)
  batch = tiny.random_batch()
  got = tiny.apply(module, model_lib.merge(trainable, frozen), batch)
  # The exported prompt (computed outside the jitted forward pass, so rounded apart) serves the plain model.
  np.testing.assert_allclose(got, _plain_logits(frozen, effective, batch), rtol=1e-5, atol=1e-5)


def test_bad_settings_are_refused():
  method = multitask.multitask_prompt(T)
  with pytest.raises(ConfigError, match="both compute the prompt"):
    model_lib.build(CFG, P, multitask_prompt=method, reparam_prompt=reparam.reparameterized_prompt())
  with pytest.raises(ConfigError, match="holds no prompt table"):
    model_lib.build(CFG, P, num_prompts=2, multitask_prompt=method)
  with pytest.raises(ConfigError, match="needs PROMPT_LENGTH >= 1"):
    model_lib.build(CFG, 0, reparam_prompt=reparam.reparameterized_prompt())
  with pytest.raises(ConfigError, match="leaves 0 shared and 4 per-task"):
    model_lib.build(CFG, 4, multitask_prompt=multitask.multitask_prompt(T, "concat", task_length=4))
  with pytest.raises(UsageError, match="MULTITASK_COMBINE = 'mul' is not one of 'add', 'concat', 'project'"):
    multitask.multitask_prompt(T, "mul")
  with pytest.raises(ConfigError, match="MULTITASK_TASK_LENGTH applies to MULTITASK_COMBINE='concat' only"):
    multitask.multitask_prompt(T, "add", task_length=2)
  with pytest.raises(UsageError, match="REPARAM_FORM = 'lstm' is not one of"):
    reparam.reparameterized_prompt("lstm")
  assert model_lib.packing_conflicts(model_lib.build(CFG, P, multitask_prompt=method)) == ["a multi-task prompt"]
  assert model_lib.packing_conflicts(model_lib.build(CFG, P, reparam_prompt=reparam.reparameterized_prompt())) == []
