"""A prompted T5 1.1: backbone (T5X names) + the `prompt` module, split by a trainable filter.

The parameter tree is T5X's (`token_embedder`, `encoder`, `decoder`) plus a top-level `prompt`
subtree, so the backbone restores from T5X checkpoints without renaming. Which parameters train
is a list of regular expressions over '/'-joined names (`encoder/layers_0/mlp/wi_0/kernel`,
`prompt/prompt`), each `re.fullmatch`ed as T5X's `ModelParamTraversal` filters do: `split` cuts a
tree into the matched (trainable) subtree and the frozen rest, `merge` puts them back together.
The default, `prompt/.*`, is prompt tuning: the trainable part is `{"prompt": {"prompt": [P, d]}}`;
`.*` (with no prompt) is model tuning, anything between is partial tuning.
"""
from __future__ import annotations

import re
from typing import Any, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax import traverse_util

from prompt_tuning.config import checks
from prompt_tuning.config.errors import ConfigError
from prompt_tuning.model import prompts as prompts_lib
from prompt_tuning.model import t5
from prompt_tuning.parallel import multihost

Array = jax.Array
Params = Mapping[str, Any]
PROMPT_KEY = "prompt"
DEFAULT_TRAINABLE = ("prompt/.*",)  # prompt tuning: the backbone stays frozen


class PromptT5(nn.Module):
  """T5 1.1 encoder-decoder whose encoder input is combined with a soft prompt."""
  cfg: t5.T5Config
  prompt_length: int = 100
  placement: str = "prefix"
  num_prompts: int = 0  # > 0: a table of prompts, chosen per example by `prompt_ids`

  def setup(self):
    c = self.cfg
    self.token_embedder = t5.Embed(c.vocab_size, c.emb_dim, c.compute_dtype)
    self.encoder = t5.Encoder(c)
    self.decoder = t5.Decoder(c)
    self.prompt = prompts_lib.Prompt(self.prompt_length, c.emb_dim, self.num_prompts)

  def encode(self, encoder_input_tokens: Array, prompt_ids: Optional[Array] = None,
             deterministic: bool = True, encoder_segment_ids: Optional[Array] = None,
             encoder_positions: Optional[Array] = None) -> tuple[Array, Array]:
    """Returns the prompted encoding [b, L+P, d] and its mask [b, L+P].

    Packed rows (`encoder_segment_ids` given, see `prompt_tuning.training.packing`) already hold P prompt
    slots per example: the encoding keeps their length [b, L], and the second value is the
    segment ids, which `decode` uses to keep each example's targets on its own inputs.
    """
    x = self.token_embedder(encoder_input_tokens)
    if encoder_segment_ids is not None:
      x = self._fill_prompt_slots(x, encoder_segment_ids, encoder_positions, prompt_ids)
      return self.encoder(x, encoder_segment_ids > 0, deterministic, encoder_segment_ids), encoder_segment_ids
    mask = encoder_input_tokens > 0
    if self.prompt_length > 0:
      x, mask = prompts_lib.combine(self.prompt(prompt_ids), x, mask, self.placement)
    return self.encoder(x, mask, deterministic), mask

  def _fill_prompt_slots(self, x: Array, segment_ids: Array, positions: Optional[Array],
                         prompt_ids: Optional[Array]) -> Array:
    """Writes the prompt into the first P positions of every packed segment."""
    if positions is None:
      raise ValueError("packed inputs need `encoder_positions` along with `encoder_segment_ids`")
    if self.placement != "prefix" or self.num_prompts:
      raise ValueError("packing supports one shared prompt in the prefix placement; turn packing "
                       f"off for placement={self.placement!r} or num_prompts={self.num_prompts}")
    if self.prompt_length == 0:
      return x
    prompt = self.prompt(prompt_ids).astype(x.dtype)  # [P, d]
    slot = (positions < self.prompt_length) & (segment_ids > 0)
    rows = jnp.take(prompt, jnp.minimum(positions, self.prompt_length - 1), axis=0)
    return jnp.where(slot[..., None], rows, x)

  def decode(self, encoded: Array, encoder_mask: Array, decoder_input_tokens: Array,
             decoder_target_tokens: Optional[Array], deterministic: bool = True,
             decode: bool | str = False, decoder_segment_ids: Optional[Array] = None) -> Array:
    """Float32 logits [b, T, vocab].

    `encoder_mask` is what `encode` returned: a boolean mask, or packed rows' segment ids (then
    `decoder_segment_ids` say which example each target position belongs to).

    With `decode=True` (and `mutable=["cache"]`) the decoder runs on the KV cache: the tokens are
    the next positions after the cache's `cache_index`, and `decoder_target_tokens` is unused
    (see `prompt_tuning.model.decoding`, which builds and steps the cache). `decode="prefill"` also
    projects `encoded` into the cross-attention keys/values that later steps read from the cache.
    """
    y = self.token_embedder(decoder_input_tokens)
    if decoder_segment_ids is not None:
      q_segments = decoder_segment_ids
      self_mask = _causal_mask(decoder_target_tokens) & t5.segment_mask(q_segments, q_segments)
    elif decode:
      self_mask, q_segments = None, jnp.ones(decoder_input_tokens.shape, jnp.int32)
    else:
      self_mask, q_segments = _causal_mask(decoder_target_tokens), (decoder_target_tokens > 0).astype(jnp.int32)
    cross_mask = t5.segment_mask(q_segments, encoder_mask.astype(jnp.int32))
    return self.decoder(y, encoded, self_mask, cross_mask, deterministic, decode)

  def __call__(self, encoder_input_tokens: Array, decoder_input_tokens: Array,
               decoder_target_tokens: Array, prompt_ids: Optional[Array] = None,
               deterministic: bool = True, encoder_segment_ids: Optional[Array] = None,
               encoder_positions: Optional[Array] = None,
               decoder_segment_ids: Optional[Array] = None) -> Array:
    encoded, mask = self.encode(encoder_input_tokens, prompt_ids, deterministic,
                                encoder_segment_ids, encoder_positions)
    return self.decode(encoded, mask, decoder_input_tokens, decoder_target_tokens, deterministic,
                       decoder_segment_ids=decoder_segment_ids)


def _causal_mask(targets: Array) -> Array:
  """T5X's decoder mask: causal, and only between non-padding target positions."""
  valid = targets > 0
  length = targets.shape[1]
  causal = jnp.arange(length)[:, None] >= jnp.arange(length)[None, :]
  return causal[None, None] & valid[:, None, :, None] & valid[:, None, None, :]


def build(cfg: t5.T5Config, prompt_length: int = 100, placement: str = "prefix",
          num_prompts: int = 0) -> PromptT5:
  """The prompted model, its settings checked (each bad one is a one-line error)."""
  fields = ("emb_dim", "num_heads", "head_dim", "mlp_dim", "num_encoder_layers", "num_decoder_layers",
            "relative_attention_num_buckets", "relative_attention_max_distance")
  checks.check({"PROMPT_LENGTH": prompt_length, "VOCAB_SIZE": cfg.vocab_size, "DROPOUT_RATE": cfg.dropout_rate,
                "ACTIVATION_DTYPE": cfg.dtype, "SCAN_LAYERS": cfg.scan_layers,
                **{f"T5Config.{f}": getattr(cfg, f) for f in fields}})
  if placement not in prompts_lib.PLACEMENTS:
    raise ConfigError(f"unknown prompt placement {placement!r}; choose one of "
                     f"{', '.join(prompts_lib.PLACEMENTS)}")
  attentions = ("xla",) + tuple(t5.FUSED)
  if cfg.attention not in attentions:
    raise ConfigError(f"unknown attention {cfg.attention!r}; choose one of {', '.join(attentions)}")
  if cfg.attention == "cudnn" and jax.default_backend() != "gpu":
    raise ConfigError(f"attention 'cudnn' runs on NVIDIA GPUs only, and JAX's backend here is "
                      f"{jax.default_backend()!r}: choose one of xla, fused")
  remats = ("none",) + tuple(t5.REMAT_POLICIES)
  if cfg.remat not in remats:
    raise ConfigError(f"unknown remat {cfg.remat!r}; choose one of {', '.join(remats)}")
  return PromptT5(cfg, prompt_length, placement, num_prompts)


def dummy_batch(batch: int, inputs_length: int, targets_length: int) -> dict[str, Array]:
  shape_in, shape_out = (batch, inputs_length), (batch, targets_length)
  return {"encoder_input_tokens": jnp.ones(shape_in, jnp.int32),
          "decoder_input_tokens": jnp.ones(shape_out, jnp.int32),
          "decoder_target_tokens": jnp.ones(shape_out, jnp.int32)}


def init_params(module: PromptT5, rng: Array, inputs_length: int = 8, targets_length: int = 4):
  """Random parameters (all of them, boxed with logical axes) — for tests and benchmarks."""
  batch = dummy_batch(1, inputs_length, targets_length)
  if module.num_prompts:
    batch["prompt_ids"] = jnp.zeros((1,), jnp.int32)
  return module.init(rng, **batch)["params"]


def _patterns(trainable: Sequence[str] | str) -> tuple[str, ...]:
  return (trainable,) if isinstance(trainable, str) else tuple(trainable)


def is_trainable(name: str, trainable: Sequence[str] | str = DEFAULT_TRAINABLE) -> bool:
  """Whether the '/'-joined parameter `name` fully matches one of the `trainable` patterns."""
  return any(re.fullmatch(p, name) for p in _patterns(trainable))


def split(params: Params, trainable: Sequence[str] | str = DEFAULT_TRAINABLE) -> tuple[dict, dict]:
  """(trainable subtree, frozen subtree) of a parameter tree (or of any tree shaped like one).

  >>> split({"prompt": {"prompt": p}, "encoder": {"encoder_norm": {"scale": s}, ...}})
  ({"prompt": {"prompt": p}}, {"encoder": {"encoder_norm": {"scale": s}, ...}})
  >>> split(params, ["encoder/.*_norm/scale"])   # only the encoder's norm scales train
  """
  flat = traverse_util.flatten_dict(dict(params), sep="/")
  chosen = {n: v for n, v in flat.items() if is_trainable(n, trainable)}
  rest = {n: v for n, v in flat.items() if n not in chosen}
  return (traverse_util.unflatten_dict(chosen, sep="/"), traverse_util.unflatten_dict(rest, sep="/"))


def merge(trainable: Params, frozen: Params) -> dict:
  """The whole tree from the two parts of `split` (nested: a layer may be split between them)."""
  flat = traverse_util.flatten_dict(dict(frozen), sep="/")
  flat.update(traverse_util.flatten_dict(dict(trainable), sep="/"))
  return traverse_util.unflatten_dict(flat, sep="/")


def check_trainable(trainable: Sequence[str] | str, names: Sequence[str]) -> tuple[str, ...]:
  """The patterns, refused (ConfigError) when empty, not regular expressions, or when one of them
  matches none of the parameter `names` (a typo, or `prompt/.*` on a model without a prompt)."""
  patterns = _patterns(trainable)
  if not patterns:
    raise ConfigError("TRAINABLE is empty, so nothing would train: give regular expressions over "
                      "parameter names, e.g. ['prompt/.*'] (prompt tuning) or ['.*'] (model tuning)")
  for pattern in patterns:
    try:
      re.compile(pattern)
    except re.error as err:
      raise ConfigError(f"TRAINABLE pattern {pattern!r} is not a regular expression ({err}): "
                        "fix it, e.g. 'encoder/layers_0/.*'") from None
    if not any(re.fullmatch(pattern, n) for n in names):
      hint = (" (the model has no prompt: PROMPT_LENGTH is 0)" if pattern.startswith(PROMPT_KEY)
              and not any(n.startswith(PROMPT_KEY + "/") for n in names) else "")
      raise ConfigError(f"TRAINABLE pattern {pattern!r} matches no parameter of the model{hint}; "
                        "patterns must match whole '/'-joined names such as "
                        f"{', '.join(sorted(names)[:2])} or prompt/prompt")
  return patterns


def cast_frozen(frozen: Params, dtype, trainable: Sequence[str] | str = ()) -> Any:
  """Stores the frozen matrices (kernels, embedding) in `dtype`, e.g. bf16, halving their memory.

  The forward pass casts exactly these to the compute dtype anyway, so with dtype equal to the
  compute dtype the outputs are bit-identical. Norm scales and relative-position tables stay
  float32 because they are used in float32, and so do parameters matched by `trainable`.
  """
  def cast(path, x):
    name = "/".join(p.key for p in path)
    keep = path[-1].key not in ("kernel", "embedding") or is_trainable(name, trainable)
    return x if keep else x.astype(dtype)
  return jax.tree_util.tree_map_with_path(cast, frozen)


def init_prompt(module: PromptT5, initializer: prompts_lib.Initializer, rng: Array,
                frozen: Params) -> dict:
  """The prompt subtree, initialized with access to the frozen embedding table."""
  embedding = frozen["token_embedder"]["embedding"]
  shape = prompts_lib.prompt_shape(module.prompt_length, module.cfg.emb_dim, module.num_prompts)
  value = initializer(rng, shape, np.asarray(multihost.fetch(embedding), np.float32))
  return {PROMPT_KEY: {"prompt": jnp.asarray(value, jnp.float32)}}
