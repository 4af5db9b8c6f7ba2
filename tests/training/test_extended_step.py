"""The train step with the prompt methods: only the method's parameters train (optimizer state for
them alone), the rank-classification losses and the wayward term equal hand computations."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_tuning.model import decoding
from prompt_tuning.model import params as params_lib
from prompt_tuning.model import prompted as model_lib
from prompt_tuning.model import prompts
from prompt_tuning.model.extended import decoder_prompt
from prompt_tuning.model.extended import deep
from prompt_tuning.model.extended import ia3
from prompt_tuning.model.extended import multitask
from prompt_tuning.model.extended import reparam
from prompt_tuning.parallel import partitioning
from prompt_tuning.training import optim
from prompt_tuning.training import rank_loss
from prompt_tuning.training import step as ts
from prompt_tuning.training import wayward
from tests import tiny

CFG = tiny.tiny_config()
P = 3

METHODS = {  # name: (prompt length, the method), the subtrees that train
    "multitask_prompt": (P, dict(multitask_prompt=multitask.multitask_prompt(2, "add", task_source="prompt_ids")),
                         ["multitask_prompt"]),
    "reparam_prompt": (P, dict(reparam_prompt=reparam.reparameterized_prompt("residual", hidden=8)),
                       ["reparam_prompt"]),
    # IA3, per-layer and decoder prompts in one model (one program to compile).
    "inside_the_layers": (P, dict(ia3=ia3.ia3(), deep_prompt=deep.deep_prompt(),
                                  decoder_prompt=decoder_prompt.decoder_prompt(2)),
                          ["decoder_prompt", "deep_prompt", "ia3", "prompt"]),
}


def _setup(prompt_length=P, **method):
  module = model_lib.build(CFG, prompt_length=prompt_length, **method)
  frozen = model_lib.split(tiny.random_params(module), model_lib.trainable_patterns(module))[1]
  trainable = model_lib.init_prompt(module, prompts.sampled_vocab(), jax.random.PRNGKey(1), frozen)
  batch = tiny.random_batch(vocab=CFG.vocab_size)
  if module.multitask_prompt is not None:
    batch["prompt_ids"] = jnp.asarray([0, 1, 1, 0], jnp.int32)
  return module, trainable, frozen, batch


@pytest.mark.parametrize("name", sorted(METHODS))
def test_only_the_methods_parameters_train(name):
  length, method, subtrees = METHODS[name]
  module, trainable, frozen, batch = _setup(length, **method)
  assert sorted(trainable) == subtrees  # nothing of the backbone
  tx = optim.adafactor()
  state = ts.TrainState.create(trainable, tx)
  shapes = sorted(x.shape for x in jax.tree.leaves(trainable))
  # One second moment per method parameter, nothing else (optax keeps [1] placeholders for the
  # unused factored statistics, and a step count).
  statistics = [x.shape for x in jax.tree.leaves(state.opt_state) if x.ndim > 0 and x.shape != (1,)]
  assert sorted(statistics) == shapes
  mesh = partitioning.create_mesh((1, 1), devices=jax.devices()[:1])
  rules = partitioning.logical_rules()
  frozen_before, trainable = jax.tree.map(np.array, frozen), jax.tree.map(np.array, trainable)  # the state is donated
  _, frozen_shardings = model_lib.split(jax.tree.map(lambda _: partitioning.replicated(mesh), {**frozen, **trainable}),
                                       model_lib.trainable_patterns(module))
  step = ts.partitioned_train_step(module, tx, mesh, rules, frozen_shardings, ts.state_shardings(state, mesh))
  new, stats = step(state, frozen, batch, None)
  assert np.isfinite(float(stats["loss"]))
  changed = [np.any(np.asarray(a) != np.asarray(b)) for a, b in
             zip(jax.tree.leaves(new.params), jax.tree.leaves(trainable))]
  assert any(changed)
  for a, b in zip(jax.tree.leaves(frozen), jax.tree.leaves(frozen_before)):
    np.testing.assert_array_equal(np.asarray(a), b)  # the backbone is untouched, bit for bit


def _candidates():
  """2 examples x 3 label candidates, in consecutive rows; gold labels 1 and 0."""
  batch = tiny.random_batch(batch=6, vocab=CFG.vocab_size, seed=3)
  inputs = np.array(batch["encoder_input_tokens"])
  inputs[1:3], inputs[4:6] = inputs[0], inputs[3]  # a candidate per label, same inputs
  correct = np.asarray([[0, 1, 0], [1, 0, 0]], np.float32)
  return {**batch, "encoder_input_tokens": jnp.asarray(inputs), "rank_correct": jnp.asarray(correct)}


@pytest.mark.parametrize("kind", rank_loss.KINDS)
def test_rank_losses_equal_hand_computed_values_on_scored_candidates(kind):
  module, trainable, frozen, _ = _setup()
  batch = _candidates()
  params = model_lib.merge(trainable, frozen)
  scores = np.asarray(decoding.score(module, params, batch), np.float64).reshape(2, 3)  # T5X score_batch
  gold = np.asarray([1, 0])
  if kind == "softmax":
    want = sum(np.log(np.exp(s).sum()) - s[g] for s, g in zip(scores, gold))
  else:
    want = sum(max(0.0, 0.2 - (s[g] - max(np.delete(s, g)))) for s, g in zip(scores, gold))
  objective = functools.partial(rank_loss.rank_loss, kind=kind, margin=0.2)
  loss, stats = ts.loss_fn(trainable, frozen, batch, None, module=module, objective=objective)
  np.testing.assert_allclose(float(loss), want, rtol=1e-5, atol=1e-6)
  assert float(stats["num_tokens"]) == 2
  assert float(stats["accuracy"]) == np.mean(scores.argmax(1) == gold)


def test_the_hinge_ignores_examples_ranked_beyond_the_margin():
  logits = jnp.zeros((4, 1, 3)).at[:, 0, 2].set(jnp.asarray([5.0, 0.0, 5.0, 5.0]))
  batch = {"decoder_target_tokens": jnp.full((4, 1), 2, jnp.int32),
           "rank_correct": jnp.asarray([[1.0, 0.0], [0.0, 1.0]])}
  # Example 0: gold log-lik ~ -0.013 vs -1.1: beyond the margin, no loss; example 1: gold behind.
  loss, _ = rank_loss.rank_loss(logits, batch, kind="hinge", margin=0.2)
  scores = np.asarray(rank_loss.sequence_scores(logits, batch["decoder_target_tokens"],
                                                jnp.ones((4, 1)))).reshape(2, 2)
  np.testing.assert_allclose(float(loss), 0.2 - (scores[1, 1] - scores[1, 0]), rtol=1e-6)


def test_wayward_term_is_added_once_per_step_whatever_the_microbatches():
  module, trainable, frozen, batch = _setup()
  target = np.asarray(jax.random.normal(jax.random.PRNGKey(5), (P, CFG.emb_dim)))
  penalty = wayward.regularizer(target, gamma=0.01)
  p = np.asarray(trainable["prompt"]["prompt"], np.float64)
  np.testing.assert_allclose(float(penalty(trainable)), 0.01 * np.sum((p - target) ** 2) / P, rtol=1e-5)
  tx = optim.adafactor()
  step = jax.jit(functools.partial(ts.train_step, module=module, tx=tx, regularizer=penalty),
                 static_argnames=("num_microbatches",))
  state = ts.TrainState.create(trainable, tx)
  one, stats = step(state, frozen, batch, None, num_microbatches=1)
  two, _ = step(state, frozen, batch, None, num_microbatches=2)
  plain = ts.loss_fn(trainable, frozen, batch, None, module=module)[0]
  np.testing.assert_allclose(float(stats["loss"]), float(plain) + float(penalty(trainable)), rtol=1e-6)
  np.testing.assert_allclose(float(stats["regularizer"]), float(penalty(trainable)), rtol=1e-6)
  np.testing.assert_allclose(one.params["prompt"]["prompt"], two.params["prompt"]["prompt"], rtol=1e-5, atol=1e-6)
  # The term's gradient pulls the prompt towards the target: with no token loss, a step moves it there.
  grads = jax.grad(penalty)(trainable)["prompt"]["prompt"]
  np.testing.assert_allclose(grads, 0.02 * (p - target) / P, rtol=1e-5, atol=1e-8)


def test_the_methods_inside_the_layers_train_alike_on_a_model_parallel_mesh():
  """IA3, per-layer and decoder prompts together, one step on a (4, 2) mesh (IA3's vectors split
  over `model` like the weights they scale): the one-device step's loss and parameters."""
  cfg = tiny.tiny_config(num_heads=4)
  methods = dict(ia3=ia3.ia3(), deep_prompt=deep.deep_prompt(mode="add"), decoder_prompt=decoder_prompt.decoder_prompt(2))
  module = model_lib.build(cfg, prompt_length=P, **methods)
  patterns = model_lib.trainable_patterns(module)
  frozen = model_lib.split(tiny.random_params(module), patterns)[1]
  trainable = model_lib.init_prompt(module, prompts.sampled_vocab(), jax.random.PRNGKey(1), frozen)
  batch = tiny.random_batch(batch=8, vocab=cfg.vocab_size)
  tx = optim.adafactor()
  ref, ref_stats = jax.jit(lambda s: ts.train_step(s, frozen, batch, None, module=module, tx=tx))(
      ts.TrainState.create(trainable, tx))
  mesh = partitioning.create_mesh((4, 2))
  rules = partitioning.logical_rules()
  trainable_sh, frozen_sh = params_lib.shardings(module, mesh, rules, patterns)
  assert tuple(trainable_sh["ia3"]["encoder_key"].spec) == (None, "model")  # [layers, heads * head_dim]
  state, state_sh = ts.create_sharded(trainable, tx, mesh, trainable_sh)
  step = ts.partitioned_train_step(module, tx, mesh, rules, frozen_sh, state_sh)
  new, stats = step(state, jax.device_put(frozen, frozen_sh), batch, None)
  np.testing.assert_allclose(float(stats["loss"]), float(ref_stats["loss"]), rtol=1e-5)
  for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(ref.params)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)
