"""Analysis of finished runs: summaries (mean ± std over seeds per setting), plots of the paper's
figures and training curves, and (later) the prompt-neighbour analysis.

This package may import the library, but nothing in the library imports it: only entry points
(`python -m prompt_tuning.sweep summarize|plot`) and scripts do, so plotting dependencies never
reach training.
"""
