"""Prompt methods researchers compare against, as modules of one frozen T5 1.1 (jax + flax only).

Each module is an optional field of `prompted.PromptT5`, so its parameters are one top-level
subtree named like the field, beside the T5X-named backbone (which stays untouched) and the plain
`prompt`; TRAINABLE selects them by that name.
  multitask.py  multitask_prompt: a shared prompt plus a per-task part (add / concat / project)
  reparam.py    reparam_prompt: the prompt as MLP(theta), or P + LayerNorm(MLP(P))
  ia3.py        ia3: scales of the attention keys / values and the MLP's hidden activations
  deep.py       deep_prompt: prompts at the inputs of chosen encoder layers (replace / add)
  decoder_prompt.py  decoder_prompt: a prompt prepended to the decoder's inputs
"""
