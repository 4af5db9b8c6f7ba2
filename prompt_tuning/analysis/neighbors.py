"""Nearest vocabulary tokens of learned prompt vectors: the paper's interpretability analysis (§7).

Each prompt position is compared by cosine similarity with every row of the frozen model's
input embedding; its top-k rows, read as SentencePiece pieces, show what the position is close
to. The paper finds tight semantic clusters, class labels that stay among the neighbours of
the positions they initialized, and many positions sharing neighbours at length 100.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from prompt_tuning.checkpoints import restore
from prompt_tuning.model import prompts as prompts_lib

EMBEDDING = "token_embedder/embedding"  # the frozen input embedding, T5X's name
NUM_PIECES = 32000  # SentencePiece pieces of the T5 vocabulary; then 100 sentinels, then padding rows
NUM_SENTINELS = 100


def input_embedding(checkpoint: str) -> np.ndarray:
  """The frozen model's input embedding [vocab, d_model] from a T5X or Hugging Face checkpoint."""
  leaves = restore.open_backbone(checkpoint)
  if EMBEDDING not in leaves:
    raise ValueError(f"{checkpoint} has no {EMBEDDING}: pass the frozen T5 checkpoint")
  return np.asarray(leaves[EMBEDDING].read())


def nearest(prompt: np.ndarray, embedding: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
  """(ids [P, k], cosine similarities [P, k]) of each prompt vector's k nearest embedding rows."""
  prompt = np.asarray(prompt, np.float32)
  embedding = np.asarray(embedding, np.float32)
  if prompt.ndim != 2 or embedding.ndim != 2 or prompt.shape[1] != embedding.shape[1]:
    raise ValueError(f"a prompt [length, d_model] and an embedding [vocab, d_model] are needed; got "
                     f"{prompt.shape} and {embedding.shape} (is the checkpoint the prompt's model size?)")
  k = min(k, len(embedding))
  unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
  similarity = unit(prompt) @ unit(embedding).T
  top = np.argpartition(-similarity, k - 1, axis=-1)[:, :k]
  order = np.argsort(-np.take_along_axis(similarity, top, -1), axis=-1, kind="stable")
  ids = np.take_along_axis(top, order, -1)
  return ids, np.take_along_axis(similarity, ids, -1)


def token_name(token_id: int, vocab_path: Optional[str] = None) -> str:
  """The SentencePiece piece of an id; sentinels as <extra_id_N>, rows past them as <unused_N>."""
  token_id = int(token_id)
  if token_id < NUM_PIECES:
    return prompts_lib.sentencepiece_processor(vocab_path).id_to_piece(token_id)
  if token_id < NUM_PIECES + NUM_SENTINELS:
    return f"<extra_id_{NUM_PIECES + NUM_SENTINELS - 1 - token_id}>"
  return f"<unused_{token_id}>"


def text_agreement(prompt: np.ndarray, embedding: np.ndarray, text: str, k: int = 5,
                   vocab_path: Optional[str] = None) -> dict:
  """How close a prompt stayed to a text, one token per position (a wayward prompt's task
  description): the positions whose nearest piece is the text's token there, those that have it
  among their k nearest, and the wayward distance ||P - E||^2 / P to the text's embeddings E."""
  ids = prompts_lib.encode_text(vocab_path, text)
  if len(ids) != len(prompt):
    raise ValueError(f"the text has {len(ids)} tokens but the prompt {len(prompt)} positions: give the "
                     "text the prompt was pulled towards (WAYWARD_TEXT)")
  near, _ = nearest(prompt, embedding, k)
  target = np.asarray(embedding, np.float32)[ids]
  distance = float(np.sum(np.square(np.asarray(prompt, np.float64) - target)) / len(ids))
  return {"tokens": len(ids), "nearest": int(sum(near[p, 0] == t for p, t in enumerate(ids))),
          "top_k": int(sum(t in near[p] for p, t in enumerate(ids))), "distance": round(distance, 6),
          "projection": " ".join(token_name(i, vocab_path) for i in near[:, 0])}


def report(prompt: np.ndarray, embedding: np.ndarray, k: int = 5, vocab_path: Optional[str] = None,
           labels: Sequence[str] = (), text: Optional[str] = None) -> dict:
  """Per position its neighbours ([piece, similarity] pairs); per label the positions that have
  one of the label's tokens among their neighbours; with `text`, its `text_agreement`."""
  ids, sims = nearest(prompt, embedding, k)
  positions = [{"position": p, "neighbors": [[token_name(i, vocab_path), round(float(s), 4)]
                                             for i, s in zip(ids[p], sims[p])]}
               for p in range(len(ids))]
  found = {}
  for label in labels:
    label_ids = set(prompts_lib.encode_text(vocab_path, label))
    found[label] = [p for p in range(len(ids)) if label_ids & set(ids[p].tolist())]
  out = {"positions": positions, "labels": found}
  if text is not None:
    out["text"] = text_agreement(prompt, embedding, text, k, vocab_path)
  return out
