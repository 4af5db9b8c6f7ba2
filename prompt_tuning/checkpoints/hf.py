"""Hugging Face T5 1.1 weights (config.json + safetensors / pytorch_model.bin) as a T5X tree, and back.

Weights are memory-mapped and exposed as lazy, transposed `Leaf`s under T5X names, so the same
shard-by-shard restore as for T5X checkpoints applies; `write_hf_t5` writes T5X-named weights
as a folder `from_pretrained` loads. The files are read directly rather than
through `transformers`: transformers >= 5 ties `lm_head` to `shared` on load for every T5, which is
wrong for T5 1.1, whose files store the two separately.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from prompt_tuning.checkpoints import t5x
from prompt_tuning.model import t5

_SAFETENSORS_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": jnp.bfloat16,
                       "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
                       "U8": np.uint8, "BOOL": np.bool_}
_SUPPORTED_TYPES = ("t5", "mt5")  # same layer layout; umt5 has per-layer position biases


def read_hf_config(path: str) -> dict:
  file = os.path.join(path, "config.json")
  if not os.path.exists(file):
    raise FileNotFoundError(f"{path} has no config.json: pass a folder saved by save_pretrained "
                            "(or downloaded with huggingface-cli download)")
  with open(file) as f:
    return json.load(f)


def config_from_hf(hf: Mapping[str, Any], **overrides) -> t5.T5Config:
  """The `T5Config` of a Hugging Face T5 1.1 config; refuses other T5 variants."""
  kind = hf.get("model_type")
  if kind not in _SUPPORTED_TYPES:
    raise ValueError(f"model_type {kind!r} is not T5: only T5 1.1-style t5/mt5 checkpoints are supported")
  proj = hf.get("feed_forward_proj", "relu")
  if proj != "gated-gelu":
    raise ValueError(f"feed_forward_proj={proj!r} is the original T5, not T5 1.1 (gated-gelu): use a "
                     "t5-v1_1 / t5-*-lm-adapt checkpoint")
  # transformers < 5 writes tie_word_embeddings=false for T5 1.1; >= 5 writes
  # scale_decoder_outputs=false (and always tie_word_embeddings=true). Either way: untied, unscaled.
  if hf.get("scale_decoder_outputs", hf.get("tie_word_embeddings", True)):
    raise ValueError("this config ties the output layer to the embedding and scales decoder outputs "
                     "(original T5); T5 1.1 has a separate lm_head: use a t5-v1_1 / lm-adapt checkpoint")
  eps = hf.get("layer_norm_epsilon", 1e-6)
  if abs(eps - 1e-6) > 1e-12:
    raise ValueError(f"layer_norm_epsilon={eps} but this model's RMS norm uses 1e-6 (T5 1.1's value)")
  fields = dict(
      vocab_size=hf["vocab_size"], emb_dim=hf["d_model"], num_heads=hf["num_heads"],
      head_dim=hf["d_kv"], mlp_dim=hf["d_ff"], num_encoder_layers=hf["num_layers"],
      num_decoder_layers=hf.get("num_decoder_layers") or hf["num_layers"],
      relative_attention_num_buckets=hf.get("relative_attention_num_buckets", 32),
      relative_attention_max_distance=hf.get("relative_attention_max_distance", 128),
      dropout_rate=hf.get("dropout_rate", 0.1))
  return t5.T5Config(**{**fields, **overrides})


def name_map(cfg: t5.T5Config) -> dict[str, tuple[str, bool]]:
  """T5X name -> (Hugging Face name, transpose?) for every frozen parameter."""
  out = {"token_embedder/embedding": ("shared.weight", False),
         "decoder/logits_dense/kernel": ("lm_head.weight", True)}
  for stack, layers in (("encoder", cfg.num_encoder_layers), ("decoder", cfg.num_decoder_layers)):
    out[f"{stack}/relpos_bias/rel_embedding"] = (
        f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight", True)
    out[f"{stack}/{stack}_norm/scale"] = (f"{stack}.final_layer_norm.weight", False)
    if stack == "encoder":
      attentions = [("attention", "pre_attention_layer_norm", "SelfAttention")]
    else:
      attentions = [("self_attention", "pre_self_attention_layer_norm", "SelfAttention"),
                    ("encoder_decoder_attention", "pre_cross_attention_layer_norm", "EncDecAttention")]
    for i in range(layers):
      ours, theirs = f"{stack}/layers_{i}", f"{stack}.block.{i}.layer"
      for j, (attn, norm, hf_attn) in enumerate(attentions):
        for proj, hf_proj in zip(("query", "key", "value", "out"), "qkvo"):
          out[f"{ours}/{attn}/{proj}/kernel"] = (f"{theirs}.{j}.{hf_attn}.{hf_proj}.weight", True)
        out[f"{ours}/{norm}/scale"] = (f"{theirs}.{j}.layer_norm.weight", False)
      mlp = len(attentions)
      for w in ("wi_0", "wi_1", "wo"):
        out[f"{ours}/mlp/{w}/kernel"] = (f"{theirs}.{mlp}.DenseReluDense.{w}.weight", True)
      out[f"{ours}/pre_mlp_layer_norm/scale"] = (f"{theirs}.{mlp}.layer_norm.weight", False)
  return out


# ----------------------------------------------------------------------------- weight files


def read_safetensors(file: str) -> dict[str, np.ndarray]:
  """Memory-mapped arrays of a .safetensors file (bfloat16 included, nothing copied)."""
  with open(file, "rb") as f:
    header_len = int.from_bytes(f.read(8), "little")
    header = json.loads(f.read(header_len))
  data = np.memmap(file, dtype=np.uint8, mode="r", offset=8 + header_len)
  out = {}
  for name, entry in header.items():
    if name == "__metadata__":
      continue
    dtype = np.dtype(_SAFETENSORS_DTYPES[entry["dtype"]])
    begin, end = entry["data_offsets"]
    out[name] = data[begin:end].view(dtype).reshape(entry["shape"])
  return out


def read_torch_bin(file: str) -> dict[str, np.ndarray]:
  """A pytorch_model.bin state dict, loaded with `weights_only=True` (no arbitrary unpickling)."""
  import torch
  state = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
  out = {}
  for name, tensor in state.items():
    if tensor.dtype == torch.bfloat16:
      out[name] = tensor.view(torch.int16).numpy().view(jnp.bfloat16)
    else:
      out[name] = tensor.numpy()
  return out


def read_weights(path: str) -> dict[str, np.ndarray]:
  """All weights of a Hugging Face model folder (single or sharded, safetensors preferred)."""
  for index_name, reader in (("model.safetensors.index.json", read_safetensors),
                             ("pytorch_model.bin.index.json", read_torch_bin)):
    index = os.path.join(path, index_name)
    if os.path.exists(index):
      with open(index) as f:
        files = sorted(set(json.load(f)["weight_map"].values()))
      return {k: v for file in files for k, v in reader(os.path.join(path, file)).items()}
  if os.path.exists(os.path.join(path, "model.safetensors")):
    return read_safetensors(os.path.join(path, "model.safetensors"))
  if os.path.exists(os.path.join(path, "pytorch_model.bin")):
    return read_torch_bin(os.path.join(path, "pytorch_model.bin"))
  raise FileNotFoundError(f"{path} has no model.safetensors or pytorch_model.bin (nor their index): "
                          "pass the folder of a downloaded Hugging Face T5 model")


# ----------------------------------------------------------------------------- T5X tree


def open_hf_t5(path: str, **config_overrides) -> tuple[dict[str, t5x.Leaf], t5.T5Config]:
  """Lazy leaves under T5X names, and the model config, of a Hugging Face T5 1.1 folder."""
  cfg = config_from_hf(read_hf_config(path), **config_overrides)
  weights = read_weights(path)
  if "shared.weight" not in weights:  # some exports keep only the stacks' copies
    for alias in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"):
      if alias in weights:
        weights["shared.weight"] = weights[alias]
        break
  if "lm_head.weight" not in weights:
    raise ValueError(f"{path} stores no lm_head.weight: T5 1.1 has an untied output layer, so this "
                     "is not a T5 1.1 checkpoint (or it was saved with tied embeddings)")
  leaves = {}
  for ours, (theirs, transpose) in name_map(cfg).items():
    if theirs not in weights:
      raise ValueError(f"{path} lacks {theirs} (for {ours}): the file does not match its config.json "
                       f"({cfg.num_encoder_layers}+{cfg.num_decoder_layers} layers)")
    leaves[ours] = t5x.ArrayLeaf(weights[theirs], np.transpose if transpose else None)
  return leaves, cfg


def load_hf_t5(path: str, *, shardings: Any = None, dtype: Any = None,
               config_overrides: Mapping[str, Any] | None = None) -> tuple[dict, t5.T5Config]:
  """(frozen parameters as jax arrays, T5Config) of a Hugging Face T5 1.1 folder.

  `shardings`/`dtype` (storage dtype) as in `t5x.materialize`: each device reads its slice of the
  mapped file. `config_overrides` go into the T5Config (e.g. `{"dtype": "float32"}`).
  """
  leaves, cfg = open_hf_t5(path, **(config_overrides or {}))
  return t5x.materialize(leaves, shardings, dtype), cfg


def is_hf_checkpoint(path: str) -> bool:
  return os.path.isdir(path) and os.path.exists(os.path.join(path, "config.json"))


# ----------------------------------------------------------------------------- writing

_SAFETENSORS_CODES = {np.dtype(v): k for k, v in _SAFETENSORS_DTYPES.items()}
_MAX_SHARD_BYTES = 5 * 2**30  # transformers' own default shard size
_WEIGHTS, _INDEX = "model.safetensors", "model.safetensors.index.json"


def hf_config(cfg: t5.T5Config, dtype: Any = "float32") -> dict:
  """config.json of T5 1.1 with this architecture, its output layer untied from the embedding.

  transformers >= 5 reads `tie_word_embeddings: false` as "do not scale the decoder output"
  (T5 1.1) and then sets it to true for every T5, yet keeps a stored `lm_head.weight` that
  differs from `shared.weight` apart; transformers < 5 unties on this flag alone.
  """
  return {
      "architectures": ["T5ForConditionalGeneration"], "model_type": "t5",
      "vocab_size": cfg.vocab_size, "d_model": cfg.emb_dim, "d_kv": cfg.head_dim, "d_ff": cfg.mlp_dim,
      "num_layers": cfg.num_encoder_layers, "num_decoder_layers": cfg.num_decoder_layers,
      "num_heads": cfg.num_heads, "relative_attention_num_buckets": cfg.relative_attention_num_buckets,
      "relative_attention_max_distance": cfg.relative_attention_max_distance,
      "dropout_rate": cfg.dropout_rate, "layer_norm_epsilon": 1e-6, "initializer_factor": 1.0,
      "feed_forward_proj": "gated-gelu", "dense_act_fn": "gelu_new", "is_gated_act": True,
      "is_encoder_decoder": True, "tie_word_embeddings": False, "scale_decoder_outputs": False,
      "decoder_start_token_id": 0, "pad_token_id": 0, "eos_token_id": 1, "use_cache": True,
      "torch_dtype": np.dtype(dtype).name,
  }


def _host_array(value: Any) -> np.ndarray:
  return value.value() if isinstance(value, t5x.Leaf) else np.asarray(jax.device_get(value))


def write_hf_t5(path: str, params: Mapping, cfg: t5.T5Config, *, dtype: Any = None,
                max_shard_bytes: int = _MAX_SHARD_BYTES) -> str:
  """Writes T5X-named frozen parameters as a Hugging Face T5 1.1 folder, atomically.

  The reverse of `open_hf_t5`: `params` (nested or '/'-joined names; jax or numpy arrays, or
  `t5x.Leaf`s, read one at a time so a large model never sits whole in host memory) become
  `model.safetensors` (sharded with an index above `max_shard_bytes`, as `save_pretrained`
  does) and config.json, which `T5ForConditionalGeneration.from_pretrained` loads with an
  untied `lm_head`. Floating arrays are cast to `dtype` (None: kept). Local paths only; an
  existing `path` is refused.
  """
  if "://" in path:
    raise ValueError(f"write_hf_t5 writes local folders; copy {path} afterwards")
  if os.path.exists(path):
    raise FileExistsError(f"{path} already exists: choose a new folder")
  flat = dict(traverse_util.flatten_dict(dict(params), sep="/"))
  names = name_map(cfg)
  missing, extra = sorted(set(names) - set(flat)), sorted(set(flat) - set(names))
  if missing or extra:
    raise ValueError(f"the parameters do not match the T5 config ({cfg.num_encoder_layers}+"
                     f"{cfg.num_decoder_layers} layers): missing {missing[:3]}, unexpected {extra[:3]}")
  entries = []  # (HF name, shape, dtype, reader), in name_map order
  for ours, (theirs, transpose) in names.items():
    value = flat[ours]
    shape, stored = tuple(value.shape), np.dtype(value.dtype)
    target = np.dtype(dtype) if dtype is not None and jnp.issubdtype(stored, jnp.floating) else stored
    entries.append((theirs, shape[::-1] if transpose else shape, target,
                    lambda value=value, transpose=transpose, target=target: np.ascontiguousarray(
                        (np.transpose if transpose else np.asarray)(_host_array(value)).astype(target, copy=False))))
  shards, size = [[]], 0
  for entry in entries:
    nbytes = int(np.prod(entry[1], dtype=np.int64)) * entry[2].itemsize
    if shards[-1] and size + nbytes > max_shard_bytes:
      shards.append([])
      size = 0
    shards[-1].append(entry)
    size += nbytes
  tmp = f"{path.rstrip('/')}.tmp-{uuid.uuid4().hex[:8]}"
  os.makedirs(tmp)
  try:
    weight_map = {}
    for i, shard in enumerate(shards):
      file = _WEIGHTS if len(shards) == 1 else f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
      write_safetensors(os.path.join(tmp, file), shard)
      weight_map.update({name: file for name, *_ in shard})
    if len(shards) > 1:
      total = sum(int(np.prod(s, dtype=np.int64)) * d.itemsize for _, s, d, _ in entries)
      with open(os.path.join(tmp, _INDEX), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    floating = [d for _, _, d, _ in entries if jnp.issubdtype(d, jnp.floating)]
    with open(os.path.join(tmp, "config.json"), "w") as f:
      json.dump(hf_config(cfg, floating[0] if floating else "float32"), f, indent=2)
    os.rename(tmp, path)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return path


def write_safetensors(file: str, entries) -> None:
  """A .safetensors file from (name, shape, dtype, reader) entries, each tensor read and
  written in turn (the format: 8-byte header length, JSON header, then the raw tensors)."""
  header, offset = {"__metadata__": {"format": "pt"}}, 0
  for name, shape, dtype, _ in entries:
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    header[name] = {"dtype": _SAFETENSORS_CODES[np.dtype(dtype)], "shape": list(shape),
                    "data_offsets": [offset, offset + nbytes]}
    offset += nbytes
  text = json.dumps(header, separators=(",", ":")).encode()
  text += b" " * (-len(text) % 8)  # the tensors start 8-byte aligned
  with open(file, "wb") as f:
    f.write(len(text).to_bytes(8, "little"))
    f.write(text)
    for name, shape, dtype, read in entries:
      array = read()
      if array.shape != tuple(shape) or array.dtype != dtype:
        raise ValueError(f"{name}: read {array.shape} {array.dtype}, expected {tuple(shape)} {dtype}")
      f.write(array.reshape(-1).view(np.uint8).data)
