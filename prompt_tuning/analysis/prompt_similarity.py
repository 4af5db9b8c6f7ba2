"""Prompt transfer (SPoT, Vu et al. 2022): which source task's prompt to start a target task from.

SPoT reads a prompt tuned on a task as that task's embedding and ranks candidate source tasks by
the similarity of their prompts to a prompt tuned (briefly) on the target, with two measures of
its §4.1: the cosine of the average tokens, cos(mean_i s_i, mean_j t_j), and the per-token
average cosine, mean_ij cos(s_i, t_j) over every pair of tokens. A third column gives, for each
target token, its best-matching source token's cosine, averaged over the target tokens
(max_i cos(s_i, t_j), a pairing that ignores the prompts' order). Prompts of different lengths
compare. The chosen source prompt then initializes the target run (`prompts/from_file.gin`).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

MEASURES = ("average_tokens", "per_token_average", "per_token_max")


def _unit(x: np.ndarray) -> np.ndarray:
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _checked(prompt: np.ndarray, what: str) -> np.ndarray:
  prompt = np.asarray(prompt, np.float64)
  if prompt.ndim != 2:
    raise ValueError(f"{what} is not one prompt [length, d_model] (shape {prompt.shape}): export "
                     "one task's prompt from a multi-task table first")
  return prompt


def similarities(source: np.ndarray, target: np.ndarray) -> dict[str, float]:
  """The three measures between a source and a target prompt [length, d_model] each."""
  source, target = _checked(source, "the source prompt"), _checked(target, "the target prompt")
  if source.shape[1] != target.shape[1]:
    raise ValueError(f"the prompts have d_model {source.shape[1]} and {target.shape[1]}: compare "
                     "prompts of one model size")
  pairs = _unit(source) @ _unit(target).T  # [source length, target length]
  average = float(_unit(source.mean(0)) @ _unit(target.mean(0)))
  return {"average_tokens": average, "per_token_average": float(pairs.mean()),
          "per_token_max": float(pairs.max(axis=0).mean())}


def rank(target: np.ndarray, sources: Mapping[str, np.ndarray], by: str = "average_tokens") -> list[dict]:
  """Every source with its measures against `target`, most similar first by `by` (ties: name)."""
  if by not in MEASURES:
    raise ValueError(f"unknown measure {by!r}; choose one of {', '.join(MEASURES)}")
  rows = [{"source": name, **similarities(prompt, target)} for name, prompt in sources.items()]
  return sorted(rows, key=lambda row: (-row[by], row["source"]))


def table(rows: list[dict]) -> str:
  """The ranking as aligned text, one source per line."""
  width = max([len("source")] + [len(r["source"]) for r in rows])
  lines = [f"{'rank':>4}  {'source':<{width}}  " + "  ".join(f"{m:>17}" for m in MEASURES)]
  for i, row in enumerate(rows, start=1):
    lines.append(f"{i:>4}  {row['source']:<{width}}  " + "  ".join(f"{row[m]:>17.4f}" for m in MEASURES))
  return "\n".join(lines)
