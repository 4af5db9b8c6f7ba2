"""The train step of every method, and its partitioned (jit over a mesh) form.

The parameters arrive in two parts (`prompted.split` by the TRAINABLE filter): the trainable
subtree, held in the TrainState, and the frozen rest, an ordinary input of the step.
`jax.value_and_grad` is taken with respect to the trainable subtree alone, so no gradient of a
frozen weight is ever computed or stored and the optimizer state exists only for what trains.
Prompt tuning (the default filter) differentiates the prompt alone; model tuning differentiates
every weight, through the same step.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, Optional

import flax
import jax
import jax.numpy as jnp
import optax

from prompt_tuning.model import prompted as model_lib
from prompt_tuning.parallel import multihost
from prompt_tuning.parallel import partitioning
from prompt_tuning.training import loss as loss_lib
from prompt_tuning.training.packing import PACKED_FEATURES

Array = jax.Array
Batch = Mapping[str, Array]
Objective = Callable[[Array, Batch], tuple[Array, dict]]  # (logits, batch) -> (loss, stats)
MODEL_FEATURES = ("encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens")
# Per-example prompt choice (a prompt table), and the layout of packed rows.
OPTIONAL_FEATURES = ("prompt_ids",) + PACKED_FEATURES


@flax.struct.dataclass
class TrainState:
  """Everything that changes during tuning (the frozen parameters are held apart, unchanged)."""
  step: Array  # tuning steps taken, starting at 0 (not the pretrained checkpoint's step)
  params: Any  # the trainable subtree, e.g. {"prompt": {"prompt": [P, d]}} for prompt tuning
  opt_state: Any

  @classmethod
  def create(cls, params: Any, tx: optax.GradientTransformation) -> "TrainState":
    return cls(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


def loss_fn(trainable: Any, frozen: Any, batch: Batch, dropout_rng: Optional[Array], *,
            module: model_lib.PromptT5, z_loss: float = 1e-4,
            loss_normalizing_factor: Optional[float] = None, objective: Optional[Objective] = None):
  """T5X loss of the prompted model (or `objective(logits, batch)`, e.g. a rank-classification
  loss of `training.rank_loss`); dropout is on when `dropout_rng` is given."""
  params = model_lib.merge(trainable, frozen)
  kwargs = {k: batch[k] for k in MODEL_FEATURES}
  kwargs.update({k: batch[k] for k in OPTIONAL_FEATURES if k in batch})
  rngs = {} if dropout_rng is None else {"dropout": dropout_rng}
  logits = module.apply({"params": params}, **kwargs, deterministic=dropout_rng is None, rngs=rngs)
  if objective is not None:
    return objective(logits, batch)
  return loss_lib.cross_entropy_loss(logits, batch["decoder_target_tokens"],
                                     batch.get("decoder_loss_weights"), z_loss,
                                     loss_normalizing_factor)


def _grads(trainable, frozen, batch, rng, loss, num_microbatches: int):
  """Loss stats and gradients of the trainable subtree, summed over microbatches (gradient
  accumulation)."""
  grad_fn = jax.value_and_grad(loss, has_aux=True)
  if num_microbatches <= 1:
    (_, stats), grads = grad_fn(trainable, frozen, batch, rng)
    return stats, grads
  size = next(iter(batch.values())).shape[0]
  if size % num_microbatches:
    raise ValueError(f"batch size {size} is not divisible by num_microbatches={num_microbatches}")
  micro = jax.tree.map(lambda x: x.reshape((num_microbatches, -1) + x.shape[1:]), batch)

  def body(carry, inputs):
    i, mb = inputs
    mb_rng = None if rng is None else jax.random.fold_in(rng, i)
    (_, stats), grads = grad_fn(trainable, frozen, mb, mb_rng)
    return jax.tree.map(jnp.add, carry, (stats, grads)), None

  zero_stats = jax.eval_shape(lambda: grad_fn(trainable, frozen, jax.tree.map(lambda x: x[0], micro), rng))
  init = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), (zero_stats[0][1], zero_stats[1]))
  (stats, grads), _ = jax.lax.scan(body, init, (jnp.arange(num_microbatches), micro))
  n = num_microbatches  # per-token means were summed: average them back
  for key in ("cross_ent_per_token", "accuracy"):
    stats[key] = stats[key] / n
  return stats, grads


def train_step(state: TrainState, frozen: Any, batch: Batch, rng: Optional[Array], *,
               module: model_lib.PromptT5, tx: optax.GradientTransformation, z_loss: float = 1e-4,
               loss_normalizing_factor: Optional[float] = None, num_microbatches: int = 1,
               objective: Optional[Objective] = None,
               regularizer: Optional[Callable[[Any], Array]] = None):
  """One optimizer step on the trainable subtree. `rng=None` turns dropout off.
  `regularizer(trainable)` (e.g. `training.wayward`) is added to the loss once per step, whatever
  the microbatches."""
  loss = functools.partial(loss_fn, module=module, z_loss=z_loss,
                           loss_normalizing_factor=loss_normalizing_factor, objective=objective)
  step_rng = None if rng is None else jax.random.fold_in(rng, state.step)
  stats, grads = _grads(state.params, frozen, batch, step_rng, loss, num_microbatches)
  if regularizer is not None:
    penalty, penalty_grads = jax.value_and_grad(regularizer)(state.params)
    grads = jax.tree.map(jnp.add, grads, penalty_grads)
    stats["loss"], stats["regularizer"] = stats["loss"] + penalty, penalty
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  stats["grad_norm"] = jnp.sqrt(sum(jnp.sum(jnp.square(g)) for g in jax.tree.leaves(grads)))
  return state.replace(step=state.step + 1, params=params, opt_state=opt_state), stats


def eval_step(trainable: Any, frozen: Any, batch: Batch, *, module: model_lib.PromptT5,
              z_loss: float = 1e-4):
  """Teacher-forced loss statistics without dropout."""
  return loss_fn(trainable, frozen, batch, None, module=module, z_loss=z_loss)[1]


# ----------------------------------------------------------------------------- partitioning


def state_shardings(state: TrainState, mesh, param_shardings: Any = None) -> TrainState:
  """The train state's shardings: the trainable parameters as `param_shardings` (the weights'
  own, from `params.shardings`; None: replicated, as for a prompt), and every optimizer
  statistic of a parameter's shape like that parameter; reduced statistics (Adafactor's factored
  rows and columns) and counters are replicated, as T5X lays them out.
  """
  rep = partitioning.replicated(mesh)
  if param_shardings is None:
    return jax.tree.map(lambda _: rep, state)
  structure = jax.tree.structure(state.params)
  shapes = [x.shape for x in jax.tree.leaves(state.params)]
  like_params = jax.tree.leaves(param_shardings)

  def per_param(subtree):  # an optimizer statistic per parameter (v, momentum, ...)
    leaves = [sh if x.shape == shape else rep for x, shape, sh in
              zip(jax.tree.leaves(subtree), shapes, like_params)]
    return jax.tree.unflatten(structure, leaves)

  mirrors = lambda x: jax.tree.structure(x) == structure
  opt = jax.tree.map(lambda x: per_param(x) if mirrors(x) else rep, state.opt_state, is_leaf=mirrors)
  return TrainState(step=rep, params=param_shardings, opt_state=opt)


def create_sharded(params: Any, tx: optax.GradientTransformation, mesh,
                   param_shardings: Any = None) -> tuple[TrainState, TrainState]:
  """(TrainState, its shardings), the optimizer state created directly in its sharded layout.

  `params` is donated (its buffers become the state's), so a model-tuning state never needs
  the weights twice, nor the whole optimizer state on one device.
  """
  create = lambda p: TrainState.create(p, tx)
  shardings = state_shardings(jax.eval_shape(create, params), mesh, param_shardings)
  params = jax.device_put(params, shardings.params)  # a no-op where they are laid out already
  jitted = jax.jit(create, in_shardings=(shardings.params,), out_shardings=shardings, donate_argnums=0)
  return jitted(params), shardings


def partitioned_train_step(module: model_lib.PromptT5, tx: optax.GradientTransformation, mesh,
                           rules, frozen_shardings: Any, state_shardings_: TrainState,
                           donate: bool = True, **step_kwargs) -> Callable:
  """`train_step` jitted over `mesh`: batch split over `data`, weights as the rules say."""
  step = functools.partial(train_step, module=module, tx=tx, **step_kwargs)
  data = partitioning.batch_sharding(mesh)
  rep = partitioning.replicated(mesh)
  jitted = jax.jit(step, in_shardings=(state_shardings_, frozen_shardings, data, rep),
                   out_shardings=(state_shardings_, rep), donate_argnums=(0,) if donate else ())

  def run(state, frozen, batch, rng):
    batch = {k: multihost.global_array(v, data) for k, v in batch.items()}  # each host: its rows
    if rng is not None:
      rng = multihost.global_array(rng, rep)
    with partitioning.activation_context(mesh, rules):
      return jitted(state, frozen, batch, rng)
  run.jitted = jitted
  return run
