"""Analysis of finished runs and prompts: summaries (mean ± std over seeds per setting), plots of
the paper's figures and training curves, and nearest vocabulary neighbours of prompt positions.

This package may import the library, but nothing in the library imports it: only entry points
(`python -m prompt_tuning.sweep summarize|plot`) and scripts do, so plotting dependencies never
reach training.
  summaries.py  runs grouped by their settings, best evaluation per run, SuperGLUE score
  neighbors.py  each prompt position's nearest vocabulary pieces (the paper's §7), and how near
                a wayward prompt stayed to its text
  prompt_similarity.py  SPoT's similarities of prompts: which source task's prompt to transfer
"""
