"""Rank-classification training losses: the model learns to rank the label strings, nothing else.

A batch holds B examples of C label candidates each, in consecutive rows (rows b*C ... b*C + C - 1
are example b's candidates, one per label string, as the `*_rank_classification` tasks expand
them; see `prompt_tuning.data.pipeline.ranked_train_batches`), and `rank_correct` [B, C] marks
the gold label. A candidate's score is its target sequence log-likelihood,
s_c = sum_t log p(y_t | y_<t, x), over its valid target tokens, the score rank-classification
evaluation ranks by. The losses, summed over the examples like T5X's token loss:
  softmax  -log softmax(s)[gold]                  cross-entropy over the valid labels only
  hinge    max(0, margin - (s_gold - max_{c != gold} s_c))
The official code's `extended/perceptron` hinge takes the maximum over every candidate, the gold
one included, so its margin never acts (a gold label ranked first costs the constant margin, with
no gradient); here the margin separates the gold label from the best wrong one.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array
KINDS = ("softmax", "hinge")


def sequence_scores(logits: Array, targets: Array, weights: Array) -> Array:
  """Per row, the summed log-likelihood of its target tokens [rows] (float32)."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32))
  token = jnp.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]
  return jnp.sum(token * weights.astype(jnp.float32), axis=-1)


def rank_loss(logits: Array, batch, *, kind: str = "softmax", margin: float = 0.2):
  """(loss, stats) of a batch of candidates; stats as `loss.cross_entropy_loss` gives them, per
  example: `cross_ent_per_token` is the mean loss per example, `accuracy` the share of examples
  whose gold label scores highest, `num_tokens` the number of examples."""
  correct = batch["rank_correct"].astype(jnp.float32)  # [B, C]
  targets = batch["decoder_target_tokens"]
  weights = batch.get("decoder_loss_weights")
  weights = (targets > 0) if weights is None else weights
  scores = sequence_scores(logits, targets, weights).reshape(correct.shape)  # [B, C]
  gold = jnp.sum(scores * correct, axis=-1)
  if kind == "softmax":
    per_example = jax.nn.logsumexp(scores, axis=-1) - gold
  else:
    wrong = jnp.max(jnp.where(correct > 0, -jnp.inf, scores), axis=-1)
    per_example = jnp.maximum(0.0, margin - (gold - wrong))
  total = jnp.sum(per_example)
  n = jnp.asarray(correct.shape[0], jnp.float32)
  first = jnp.argmax(scores, axis=-1) == jnp.argmax(correct, axis=-1)
  stats = {"loss": total, "cross_ent_per_token": total / n, "accuracy": jnp.mean(first.astype(jnp.float32)),
           "z_loss": jnp.zeros((), jnp.float32), "num_tokens": n}
  return total, stats
