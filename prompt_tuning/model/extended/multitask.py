"""Multi-task prompts: a prompt shared by every task plus a per-task part, chosen per example.

The three ways of the official code's `extended/multitask_prompts.py` to combine the parts
(`combine`), for T tasks, effective prompt length P and d_model d:
  add      prompt_t = shared + tasks[t]              shared [P, d], tasks [T, P, d]
  concat   prompt_t = [shared; tasks[t]] (length)    shared [P - P_t, d], tasks [T, P_t, d]
  project  prompt_t = shared @ kernel[t] + bias[t]   shared [P, d], kernel [T, d, d], bias [T, d]
Initialized so that every task starts from the shared prompt (zero task parts, identity
projections), except concat, whose task part starts like the shared one.

The task of an example is read from its first input token, the sentinel `<extra_id_t>` that the
`task_index_*` variants prepend (the token is then dropped before encoding, as in the official
code), or from a `prompt_ids` feature (`task_source`).
"""
from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
from flax import linen as nn

from prompt_tuning.config import checks
from prompt_tuning.config.errors import ConfigError

Array = jax.Array
COMBINES = ("add", "concat", "project")
TASK_SOURCES = ("sentinel", "prompt_ids")
# T5's SentencePiece vocabulary has 32,100 ids; <extra_id_t> is id 32099 - t.
SENTINEL_VOCAB_SIZE = 32100


def sentinel_to_task(first_tokens: Array, vocab_size: int = SENTINEL_VOCAB_SIZE) -> Array:
  """Task index t of the sentinel <extra_id_t> (token id vocab_size - 1 - t)."""
  return vocab_size - 1 - first_tokens


class MultiTaskPrompt(nn.Module):
  """Parameters `shared`, and `tasks` (add, concat) or `kernel` + `bias` (project)."""
  num_tasks: int
  combine: str = "add"
  task_length: Optional[int] = None  # concat: positions of the task part (default: half)
  task_source: str = "sentinel"
  vocab_size: int = SENTINEL_VOCAB_SIZE

  def lengths(self, length: int) -> tuple[int, int]:
    """(shared, per-task) prompt positions for an effective prompt of `length`."""
    if self.combine != "concat":
      return length, length
    task = length // 2 if self.task_length is None else self.task_length
    return length - task, task

  @nn.compact
  def __call__(self, length: int, features: int, task_ids: Array) -> Array:
    """The effective prompts [b, length, features] of the tasks `task_ids` [b]."""
    shared_length, task_length = self.lengths(length)
    zeros = nn.initializers.zeros
    shared = self.param("shared", nn.with_logical_partitioning(zeros, ("prompt", "prompt_embed")),
                        (shared_length, features), jnp.float32)
    if self.combine == "project":
      eye = lambda rng, shape, dtype: jnp.broadcast_to(jnp.eye(shape[-1], dtype=dtype), shape)
      kernel = self.param("kernel", nn.with_logical_partitioning(
          eye, ("prompt_tasks", "prompt_embed", "prompt_hidden")), (self.num_tasks, features, features),
          jnp.float32)
      bias = self.param("bias", nn.with_logical_partitioning(zeros, ("prompt_tasks", "prompt_hidden")),
                        (self.num_tasks, features), jnp.float32)
      return jnp.einsum("pd,bde->bpe", shared, kernel[task_ids]) + bias[task_ids][:, None, :]
    tasks = self.param("tasks", nn.with_logical_partitioning(
        zeros, ("prompt_tasks", "prompt", "prompt_embed")), (self.num_tasks, task_length, features),
        jnp.float32)
    own = tasks[task_ids]
    if self.combine == "add":
      return shared[None] + own
    return jnp.concatenate([jnp.broadcast_to(shared, (own.shape[0],) + shared.shape), own], axis=1)

  def task_ids(self, first_tokens: Array) -> Array:
    return sentinel_to_task(first_tokens, self.vocab_size)

  def initial_params(self, rng: Array, model, embedding, initializer) -> dict:
    """`shared` (and concat's task parts) from the prompt initializer, the rest as above."""
    length, features = model.prompt_length, model.cfg.emb_dim
    shared_rng, tasks_rng = jax.random.split(rng)
    params = nn.meta.unbox(self.init(rng, length, features, jnp.zeros((1,), jnp.int32))["params"])
    shared_length, task_length = self.lengths(length)
    params["shared"] = jnp.asarray(initializer(shared_rng, (shared_length, features), embedding), jnp.float32)
    if self.combine == "concat":
      params["tasks"] = jnp.asarray(initializer(tasks_rng, (self.num_tasks, task_length, features), embedding),
                                    jnp.float32)
    return params


def multitask_prompt(num_tasks: int, combine: str = "add", task_length: Optional[int] = None,
                     task_source: str = "sentinel") -> MultiTaskPrompt:
  """A multi-task prompt (checked); its effective length is the model's PROMPT_LENGTH."""
  checks.check({"NUM_TASKS": num_tasks, "MULTITASK_COMBINE": combine, "MULTITASK_TASK_LENGTH": task_length,
                "MULTITASK_TASK_SOURCE": task_source})
  if task_length is not None and combine != "concat":
    raise ConfigError(f"MULTITASK_TASK_LENGTH applies to MULTITASK_COMBINE='concat' only, not {combine!r}: "
                      "unset it")
  return MultiTaskPrompt(int(num_tasks), combine, task_length, task_source)
