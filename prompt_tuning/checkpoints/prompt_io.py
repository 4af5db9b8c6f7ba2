"""The learned prompt as a portable file: `.npy` and PyTorch PEFT prompt-tuning adapters.

`.npy` (float32 [P, d], never pickled) is what the official prompt-tuning code writes and reads.
A PEFT adapter folder (`adapter_config.json` + `adapter_model.safetensors` holding
`prompt_embeddings`) loads with `PeftModel.from_pretrained` onto the same backbone in PyTorch.
PEFT prepends the prompt to the encoder input, i.e. this project's "prefix" placement.
"""
from __future__ import annotations

import json
import os
from typing import Any, Optional

import numpy as np

from prompt_tuning.checkpoints import finite
from prompt_tuning.config import fileio
from prompt_tuning.model import prompts as prompts_lib
from prompt_tuning.parallel import multihost

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PEFT_KEY = "prompt_embeddings"


def _as_prompt(prompt: Any) -> np.ndarray:
  """A [P, d] (or [T, P, d]) float32 numpy array from a jax/numpy array or a prompt subtree."""
  if isinstance(prompt, dict):  # {"prompt": {"prompt": x}} or {"prompt": x}
    prompt = prompt["prompt"]
    prompt = prompt["prompt"] if isinstance(prompt, dict) else prompt
  value = np.asarray(multihost.fetch(prompt), np.float32)
  if value.ndim not in (2, 3):
    raise ValueError(f"a prompt is [length, d_model] (or [tasks, length, d_model]); got shape {value.shape}")
  return value


# ----------------------------------------------------------------------------- npy


def save_npy(path: str, prompt: Any) -> str:
  """Writes the prompt atomically; NaN or infinite values are refused (NonFiniteError)."""
  value = _as_prompt(prompt)
  finite.refuse_nonfinite(value, f"{path} not written")

  def write(tmp):
    with open(tmp, "wb") as f:
      np.save(f, value, allow_pickle=False)
  fileio.atomic_write(path, write)
  return path


def load_npy(path: str, shape: Optional[tuple[int, ...]] = None) -> np.ndarray:
  """A prompt `.npy` as float32, checked against the model's prompt shape when given."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"prompt file {path} does not exist")
  try:
    value = np.load(path, allow_pickle=False)
  except (ValueError, OSError) as err:  # cut short, or not a plain .npy array (pickles are never read)
    raise ValueError(f"prompt file {path} cannot be read ({err}): it is not a whole float .npy "
                     "array; save the prompt again") from None
  if not isinstance(value, np.ndarray) or not np.issubdtype(value.dtype, np.floating):
    raise ValueError(f"{path} holds {getattr(value, 'dtype', type(value).__name__)} values; a prompt is "
                     "a float array [length, d_model]")
  return _checked(value.astype(np.float32), shape, path)


def _checked(value: np.ndarray, shape, source: str) -> np.ndarray:
  """The prompt read from `source`, refused when its shape is not the model's or it is not finite."""
  if shape is not None and tuple(value.shape) != tuple(shape):
    raise ValueError(f"prompt/prompt: {source} has shape {tuple(value.shape)} but the model expects "
                     f"{tuple(shape)} (prompt length x d_model): set the prompt length / model size to match")
  bad = finite.nonfinite(value)
  if bad:
    raise finite.NonFiniteError(f"prompt file {source} holds NaN or infinite values (saved by a diverged "
                                "run?); use another prompt file")
  return value


# ----------------------------------------------------------------------------- PEFT


def save_peft(folder: str, prompt: Any, *, num_layers: int, num_attention_heads: int,
              base_model_name_or_path: Optional[str] = None,
              tokenizer_name_or_path: Optional[str] = None) -> str:
  """Writes a PEFT PROMPT_TUNING adapter for a seq2seq (T5) model.

  `num_transformer_submodules=1`: the prompt goes in front of the encoder input only, as here.
  `num_layers`/`num_attention_heads` are informational for PEFT (the T5 config's values).
  """
  value = _as_prompt(prompt)
  finite.refuse_nonfinite(value, f"{folder} not written")
  if value.ndim != 2:
    raise ValueError(f"PEFT adapters hold one prompt [P, d]; got shape {value.shape} (export one task)")
  from safetensors.numpy import save_file
  config = {
      "peft_type": "PROMPT_TUNING", "task_type": "SEQ_2_SEQ_LM", "inference_mode": True,
      "num_virtual_tokens": int(value.shape[0]), "token_dim": int(value.shape[1]),
      "num_transformer_submodules": 1, "num_attention_heads": int(num_attention_heads),
      "num_layers": int(num_layers), "prompt_tuning_init": "RANDOM", "prompt_tuning_init_text": None,
      "tokenizer_name_or_path": tokenizer_name_or_path, "tokenizer_kwargs": None,
      "base_model_name_or_path": base_model_name_or_path, "revision": None,
      "modules_to_save": None, "auto_mapping": None,
  }
  os.makedirs(folder, exist_ok=True)
  fileio.atomic_write(os.path.join(folder, ADAPTER_WEIGHTS),
                lambda tmp: save_file({PEFT_KEY: np.ascontiguousarray(value)}, tmp, metadata={"format": "pt"}))

  def write_config(tmp):
    with open(tmp, "w") as f:
      json.dump(config, f, indent=2)
  fileio.atomic_write(os.path.join(folder, ADAPTER_CONFIG), write_config)
  return folder


def load_peft(folder: str, shape: Optional[tuple[int, ...]] = None) -> np.ndarray:
  """The encoder prompt [P, d] of a PEFT PROMPT_TUNING adapter folder."""
  config_path = os.path.join(folder, ADAPTER_CONFIG)
  if not os.path.exists(config_path):
    raise FileNotFoundError(f"{folder} has no {ADAPTER_CONFIG}: pass a PEFT adapter folder")
  with open(config_path) as f:
    config = json.load(f)
  if config.get("peft_type") != "PROMPT_TUNING":
    raise ValueError(f"{folder} is a {config.get('peft_type')} adapter; only PROMPT_TUNING adapters hold a soft prompt")
  from safetensors import SafetensorError
  from safetensors.numpy import load_file
  weights_path = os.path.join(folder, ADAPTER_WEIGHTS)
  if not os.path.exists(weights_path):
    raise FileNotFoundError(f"{folder} has no {ADAPTER_WEIGHTS} (adapters saved as .bin are not read: "
                            "re-save with safe_serialization=True)")
  try:
    weights = load_file(weights_path)
  except (SafetensorError, OSError, ValueError) as err:
    raise ValueError(f"{weights_path} cannot be read ({err}): the file is cut short or damaged; save "
                     "the adapter again") from None
  if PEFT_KEY not in weights:
    raise ValueError(f"{weights_path} has no {PEFT_KEY!r} tensor (found {sorted(weights)})")
  value = weights[PEFT_KEY].astype(np.float32)
  # With num_transformer_submodules=2 PEFT stores 2P rows; prompt tuning only feeds the first P
  # (the encoder's) to a seq2seq model.
  value = value[: int(config["num_virtual_tokens"])]
  return _checked(value, shape, folder)


def load_prompt(path: str, shape: Optional[tuple[int, ...]] = None) -> np.ndarray:
  """A prompt from a `.npy` file or a PEFT adapter folder."""
  if os.path.isdir(path):
    return load_peft(path, shape)
  return load_npy(path, shape)


def from_npy(path: str) -> prompts_lib.Initializer:
  """A prompt initializer that reads a saved prompt: a float `.npy` of shape [P, d_model]
  (never unpickled) or a PEFT adapter folder."""
  def init(rng, shape, embedding=None):
    return prompts_lib.from_array(load_prompt(path))(rng, shape, embedding)
  return init
