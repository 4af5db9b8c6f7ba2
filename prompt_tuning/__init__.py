"""Prompt tuning of frozen T5 1.1 models in JAX/Flax (Lester et al., 2021).

The core (model, prompt, train step, partitioning, checkpoints) imports without TensorFlow;
seqio tasks live in `prompt_tuning.data`, imported only by whoever needs them.
"""
__version__ = "0.1.0"
