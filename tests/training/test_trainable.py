"""The trainable filter: which parameters the one train step differentiates, and nothing else."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from prompt_tuning.config.errors import ConfigError
from prompt_tuning.model import params as params_lib
from prompt_tuning.model import prompted as model_lib
from prompt_tuning.parallel import partitioning
from prompt_tuning.training import optim
from prompt_tuning.training import step as ts
from tests import tiny

NORMS_AND_BIAS = ["encoder/.*_norm/scale", "decoder/relpos_bias/rel_embedding"]


def _flat(tree):
  return traverse_util.flatten_dict(tree, sep="/")


def test_the_default_filter_is_the_prompt_subtree():
  module = model_lib.build(tiny.tiny_config(), prompt_length=3)
  params = tiny.random_params(module)
  prompt, frozen = model_lib.split(params)
  assert prompt == {"prompt": {"prompt": params["prompt"]["prompt"]}}
  assert sorted(frozen) == ["decoder", "encoder", "token_embedder"]
  assert frozen["encoder"] is not params["encoder"] and _flat(frozen) == _flat({**params, "prompt": {}})


def test_split_cuts_inside_layers_and_merge_restores_the_tree():
  module = model_lib.build(tiny.tiny_config(), prompt_length=0)
  params = tiny.random_params(module)
  trainable, frozen = model_lib.split(params, ["encoder/layers_0/mlp/wi_.*/kernel", *NORMS_AND_BIAS])
  assert sorted(_flat(trainable)) == [
      "decoder/relpos_bias/rel_embedding", "encoder/encoder_norm/scale",
      "encoder/layers_0/mlp/wi_0/kernel", "encoder/layers_0/mlp/wi_1/kernel",
      "encoder/layers_0/pre_attention_layer_norm/scale", "encoder/layers_0/pre_mlp_layer_norm/scale",
      "encoder/layers_1/pre_attention_layer_norm/scale", "encoder/layers_1/pre_mlp_layer_norm/scale"]
  assert "wo" in frozen["encoder"]["layers_0"]["mlp"] and "wi_0" not in frozen["encoder"]["layers_0"]["mlp"]
  assert set(_flat(trainable)).isdisjoint(_flat(frozen))
  merged = _flat(model_lib.merge(trainable, frozen))
  assert merged.keys() == _flat(params).keys() and all(merged[k] is v for k, v in _flat(params).items())
  everything, nothing = model_lib.split(params, [".*"])
  assert nothing == {} and _flat(everything).keys() == _flat(params).keys()


@pytest.mark.parametrize("patterns, message", [
    ([], "TRAINABLE is empty"),
    (["encoder/(layers"], "is not a regular expression"),
    (["encoder/layer_0/.*"], "'encoder/layer_0/.*' matches no parameter of the model;"),
    (["prompt/.*"], "matches no parameter of the model (the model has no prompt: PROMPT_LENGTH is 0)"),
    (["layers_0/mlp/.*"], "must match whole '/'-joined names"),  # fullmatch, not search
])
def test_bad_filters_are_one_line_config_errors(patterns, message):
  names = params_lib.names(model_lib.build(tiny.tiny_config(), prompt_length=0))
  with pytest.raises(ConfigError) as err:
    model_lib.check_trainable(patterns, names)
  assert message in str(err.value) and "\n" not in str(err.value)
  assert model_lib.check_trainable(".*", names) == (".*",)  # one pattern may be given as a string


def test_partial_tuning_changes_only_the_matched_leaves_and_only_they_have_optimizer_state():
  cfg = tiny.tiny_config(dropout_rate=0.1)
  module = model_lib.build(cfg, prompt_length=0)
  params = tiny.random_params(module, seed=2)
  before = jax.tree.map(np.array, params)
  trainable, frozen = model_lib.split(params, NORMS_AND_BIAS)
  tx = optim.adafactor(learning_rate=0.1, factored=True)
  state = ts.TrainState.create(trainable, tx)
  matched = _flat(trainable)
  # Optimizer statistics exist for exactly the matched leaves: each per-parameter tree of the
  # state mirrors the trainable subtree, and nothing in it has a frozen weight's shape.
  mirrors = [x for x in jax.tree.leaves(state.opt_state, is_leaf=lambda x: isinstance(x, dict))
             if isinstance(x, dict)]
  assert mirrors and all(_flat(m).keys() == matched.keys() for m in mirrors)
  stats_size = sum(x.size for x in jax.tree.leaves(state.opt_state))
  assert stats_size <= sum(x.size for x in matched.values()) + 3 * len(matched) + 4
  step = jax.jit(lambda s, b, r: ts.train_step(s, frozen, b, r, module=module, tx=tx))
  for i in range(3):
    state, _ = step(state, tiny.random_batch(vocab=cfg.vocab_size, seed=i), jax.random.PRNGKey(i))
  after = _flat(jax.tree.map(np.array, model_lib.merge(state.params, frozen)))
  for name, value in _flat(before).items():
    if name in matched:
      assert not np.array_equal(after[name], value), name
    else:
      assert after[name].tobytes() == value.tobytes(), name


def test_model_tuning_differentiates_every_weight_and_prompt_tuning_none():
  """The same loss: with TRAINABLE ['.*'] the step's matmuls include the weight gradients."""
  module = model_lib.build(tiny.tiny_config(), prompt_length=3)
  params = tiny.random_params(module)
  batch = tiny.random_batch()
  dots = lambda trainable: str(jax.make_jaxpr(jax.grad(
      lambda t, f: ts.loss_fn(t, f, batch, None, module=module)[0]))(*model_lib.split(params, trainable))
  ).count("dot_general")
  kernels = 2 * 7 + 2 * 11 + 1  # encoder and decoder layers' kernels, and the output layer
  assert dots([".*"]) - dots(["prompt/.*"]) >= kernels


def test_state_shardings_follow_the_weights():
  module = model_lib.build(tiny.tiny_config(num_heads=4, emb_dim=16, vocab_size=256), prompt_length=0)
  params = tiny.random_params(module)
  mesh = partitioning.create_mesh((2, 4))
  trainable_sh, _ = params_lib.shardings(module, mesh, partitioning.logical_rules(), [".*"])
  tx = optim.adafactor(factored=True)
  state, shardings = ts.create_sharded(jax.tree.map(jnp.array, params), tx, mesh, trainable_sh)
  q = "encoder/layers_0/attention/query/kernel"
  spec = _flat(shardings.params)[q].spec
  assert tuple(spec) == (None, "model")  # [embed, joined_kv]: heads over the model axis
  v = [s for s in jax.tree.leaves(shardings.opt_state) if s.spec == spec]
  assert v  # the unfactored second moments of [embed, joined_kv] kernels are split like them
  assert _flat(state.params)[q].sharding.spec == spec
