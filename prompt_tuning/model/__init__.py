"""The model: T5 1.1 with a soft prompt, its initializers, and decoding (jax + flax only).

Imports `prompt_tuning.parallel` and `prompt_tuning.config`, never TensorFlow, seqio or TFDS.
  t5.py        T5 1.1 layers and stacks (RMS norm, gated GELU, relative positions), the sizes
  prompts.py   the Prompt module, the paper's initializers, where the prompt goes in the input
  prompted.py  PromptT5: embed -> place the prompt -> encode -> decode; build() checks settings
  params.py    parameter trees without allocation, their shardings, random frozen weights
  layer_stack.py  scanned (stacked `layers`) <-> checkpoint (`layers_{i}`) parameter layouts
  decoding.py  greedy, beam search, sampling and scoring on a key/value cache
  extended/    the other prompt methods as PromptT5's optional modules: multi-task and
               reparameterized prompts, IA3, per-layer prompts, a decoder prompt
"""
