"""A prompt as a PyTorch PEFT adapter, with the backbone's sizes found rather than typed.

PEFT's adapter_config.json records the encoder's layer and head counts. They come from the
run's `config.gin` (the model the prompt was tuned with) when the source is a MODEL_DIR or one
of its checkpoints, else from the backbone checkpoint itself (T5X shapes or a Hugging Face
config.json). Training writes the same adapter at every checkpoint with `PEFT_EXPORT = True`.
"""
from __future__ import annotations

import os
from typing import Optional

import gin

import prompt_tuning.runs.configurables  # noqa: F401  the model's configurables, for config.gin
from prompt_tuning.checkpoints import hf
from prompt_tuning.checkpoints import prompt_io
from prompt_tuning.checkpoints import shapes
from prompt_tuning.config import gin_config
from prompt_tuning.config.errors import UsageError
from prompt_tuning.model import prompted as model_lib
from prompt_tuning.model import t5

CONFIG = "config.gin"


def _run_config(source: str) -> Optional[str]:
  """config.gin of a MODEL_DIR, or of the run a `checkpoint_<step>` (or its `state/`) belongs to."""
  folder = os.path.abspath(source)
  for _ in range(3):
    if os.path.isfile(os.path.join(folder, CONFIG)):
      return os.path.join(folder, CONFIG)
    folder = os.path.dirname(folder)
  return None


def model_config(source: str) -> t5.T5Config:
  """The T5Config of a run (MODEL_DIR, checkpoint_<step>) or of a backbone checkpoint."""
  config = _run_config(source) if os.path.isdir(source) else None
  if config is None:
    try:
      return shapes.backbone_config(source)
    except (ValueError, KeyError, FileNotFoundError, OSError) as err:
      raise UsageError(f"cannot read the model sizes from {source}: {' '.join(str(err).split())}; pass "
                       "the run's MODEL_DIR or its frozen checkpoint (T5X or Hugging Face)") from None
  gin_config.parse([config])
  model = gin.query_parameter("%MODEL")
  model = model.scoped_configurable_fn() if isinstance(model, gin.config.ConfigurableReference) else model
  gin.clear_config(clear_constants=True)
  return model.cfg


def peft_settings(module: model_lib.PromptT5, checkpoint: Optional[str]) -> dict:
  """`prompt_io.save_peft` keyword arguments for prompts of `module` tuned on `checkpoint`;
  refuses a prompt PEFT cannot place (PEFT prepends one prompt to the encoder input)."""
  if module.placement != "prefix" or module.num_prompts:
    raise UsageError(f"a PEFT adapter holds one prompt prepended to the encoder input, but this model "
                     f"has placement {module.placement!r} and {module.num_prompts or 1} prompt(s): use "
                     "PROMPT_PLACEMENT='prefix' with one prompt, or save .npy prompts only")
  return {"num_layers": module.cfg.num_encoder_layers, "num_attention_heads": module.cfg.num_heads,
          "base_model_name_or_path": checkpoint if checkpoint and hf.is_hf_checkpoint(checkpoint) else None}


def export_peft(prompt: str, source: str, out: str, base_model_name_or_path: Optional[str] = None) -> str:
  """Writes the prompt file `prompt` (.npy or adapter folder) as a PEFT adapter folder `out`."""
  if os.path.exists(out):
    raise UsageError(f"{out} already exists: choose a new adapter folder")
  cfg = model_config(source)
  try:
    value = prompt_io.load_prompt(prompt)
  except (ValueError, OSError) as err:
    raise UsageError(" ".join(str(err).split())) from None
  if value.ndim != 2 or value.shape[1] != cfg.emb_dim:
    raise UsageError(f"prompt {prompt} has shape {value.shape} but the model of {source} takes "
                     f"[length, {cfg.emb_dim}]: pass the prompt and the model it was tuned on")
  if base_model_name_or_path is None and hf.is_hf_checkpoint(source):
    base_model_name_or_path = source
  return prompt_io.save_peft(out, value, num_layers=cfg.num_encoder_layers, num_attention_heads=cfg.num_heads,
                             base_model_name_or_path=base_model_name_or_path)
