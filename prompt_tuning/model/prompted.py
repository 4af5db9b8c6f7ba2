"""A prompted T5 1.1: backbone (T5X names) + the `prompt` module, split by a trainable filter.

The parameter tree is T5X's (`token_embedder`, `encoder`, `decoder`) plus a top-level `prompt`
subtree, so the backbone restores from T5X checkpoints without renaming. Which parameters train
is a list of regular expressions over '/'-joined names (`encoder/layers_0/mlp/wi_0/kernel`,
`prompt/prompt`), each `re.fullmatch`ed as T5X's `ModelParamTraversal` filters do: `split` cuts a
tree into the matched (trainable) subtree and the frozen rest, `merge` puts them back together.
The default, `prompt/.*`, is prompt tuning: the trainable part is `{"prompt": {"prompt": [P, d]}}`;
`.*` (with no prompt) is model tuning, anything between is partial tuning.

The other prompt methods (`prompt_tuning.model.extended`) are optional fields of PromptT5, each
a top-level subtree named like its field beside the backbone (`METHOD_FIELDS`): two compute the
prompt instead of `prompt/prompt`, the others act inside the encoder / decoder layers.
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
# The fields of the methods of `prompt_tuning.model.extended`, which name their parameter subtrees.
METHOD_FIELDS = ("multitask_prompt", "reparam_prompt", "ia3", "deep_prompt", "decoder_prompt")
# Everything that is not the backbone, which checkpoints hold: the prompt and the methods.
OUTSIDE_BACKBONE = tuple(f"{key}/.*" for key in (PROMPT_KEY,) + METHOD_FIELDS)


class PromptT5(nn.Module):
  """T5 1.1 encoder-decoder whose encoder input is combined with a soft prompt."""
  cfg: t5.T5Config
  prompt_length: int = 100
  placement: str = "prefix"
  num_prompts: int = 0  # > 0: a table of prompts, chosen per example by `prompt_ids`
  # Methods of `prompt_tuning.model.extended` (None: off); each one's parameters are the top-level
  # subtree named like its field. The first two compute the prompt in place of `prompt/prompt`.
  multitask_prompt: Optional[nn.Module] = None  # a shared prompt + a per-task part
  reparam_prompt: Optional[nn.Module] = None  # MLP(theta), or P + LayerNorm(MLP(P))
  ia3: Optional[nn.Module] = None  # scales of the attention keys, values and MLP activations
  deep_prompt: Optional[nn.Module] = None  # prompts at the inputs of encoder layers
  decoder_prompt: Optional[nn.Module] = None  # a prompt prepended to the decoder's inputs

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
    if self._reads_task_sentinel():  # the task-index token names the task, and is dropped
      prompt_ids = self.multitask_prompt.task_ids(encoder_input_tokens[:, 0])
      encoder_input_tokens = encoder_input_tokens[:, 1:]
    x = self.token_embedder(encoder_input_tokens)
    hooks = self._hooks("encoder")
    if encoder_segment_ids is not None:
      x = self._fill_prompt_slots(x, encoder_segment_ids, encoder_positions, prompt_ids)
      return (self.encoder(x, encoder_segment_ids > 0, deterministic, encoder_segment_ids, hooks),
              encoder_segment_ids)
    mask = encoder_input_tokens > 0
    if self.prompt_length > 0:
      x, mask = prompts_lib.combine(self.effective_prompt(prompt_ids), x, mask, self.placement)
    return self.encoder(x, mask, deterministic, hooks=hooks), mask

  def _hooks(self, stack: str) -> dict:
    """The per-layer inputs (`t5.LayerHooks`) the methods give the layers of `stack`."""
    hooks = {}
    if self.ia3 is not None:
      hooks.update(self.ia3(self.cfg)[0 if stack == "encoder" else 1])
    if self.deep_prompt is not None and stack == "encoder":
      hooks.update(self.deep_prompt(self.cfg, self.prompt_length))
    return hooks

  @property
  def decoder_prompt_length(self) -> int:
    return self.decoder_prompt.length if self.decoder_prompt is not None else 0

  def effective_prompt(self, prompt_ids: Optional[Array] = None) -> Array:
    """The prompt the encoder sees: [P, d], or [b, P, d] for the examples' `prompt_ids` (a prompt
    table, or a multi-task prompt's task indices: all T tasks' [T, P, d] when None)."""
    c = self.cfg
    if self.multitask_prompt is not None:
      if prompt_ids is None:
        prompt_ids = jnp.arange(self.multitask_prompt.num_tasks)
      return self.multitask_prompt(self.prompt_length, c.emb_dim, prompt_ids)
    if self.reparam_prompt is not None:
      return self.reparam_prompt(self.prompt_length, c.emb_dim)
    return self.prompt(prompt_ids)

  def _reads_task_sentinel(self) -> bool:
    return self.multitask_prompt is not None and self.multitask_prompt.task_source == "sentinel"

  def _fill_prompt_slots(self, x: Array, segment_ids: Array, positions: Optional[Array],
                         prompt_ids: Optional[Array]) -> Array:
    """Writes the prompt into the first P positions of every packed segment."""
    if positions is None:
      raise ValueError("packed inputs need `encoder_positions` along with `encoder_segment_ids`")
    conflicts = packing_conflicts(self)
    if conflicts:
      raise ValueError(f"packing supports one shared prompt in the prefix placement; turn packing "
                       f"off for {', '.join(conflicts)}")
    if self.prompt_length == 0:
      return x
    prompt = self.effective_prompt(prompt_ids).astype(x.dtype)  # [P, d]
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
    projects `encoded` into the cross-attention keys/values that later steps read from the cache;
    with a decoder prompt, prefilling feeds the prompt (not the tokens), which then fills the
    cache's first P_d positions. Without the cache, a decoder prompt goes before the tokens and
    its positions' logits are dropped.
    """
    y = self.token_embedder(decoder_input_tokens)
    pd = self.decoder_prompt_length
    if pd and decoder_segment_ids is None and decode in (False, "prefill"):
      prompt = self.decoder_prompt(self.cfg.emb_dim).astype(y.dtype)
      prompt = jnp.broadcast_to(prompt, (y.shape[0],) + prompt.shape)
      if decode:  # prefill: the prompt alone
        y, decoder_input_tokens = prompt, jnp.ones(prompt.shape[:2], jnp.int32)
      else:
        y = jnp.concatenate([prompt, y], axis=1)
        decoder_target_tokens = jnp.concatenate(
            [jnp.ones((y.shape[0], pd), decoder_target_tokens.dtype), decoder_target_tokens], axis=1)
    if decoder_segment_ids is not None:
      q_segments = decoder_segment_ids
      self_mask = _causal_mask(decoder_target_tokens) & t5.segment_mask(q_segments, q_segments)
    elif decode:
      self_mask, q_segments = None, jnp.ones(decoder_input_tokens.shape, jnp.int32)
    else:
      self_mask, q_segments = _causal_mask(decoder_target_tokens), (decoder_target_tokens > 0).astype(jnp.int32)
    cross_mask = t5.segment_mask(q_segments, encoder_mask.astype(jnp.int32))
    logits = self.decoder(y, encoded, self_mask, cross_mask, deterministic, decode,
                          hooks=self._hooks("decoder"))
    return logits[:, pd:] if pd and not decode else logits

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


def packing_conflicts(module: PromptT5) -> list[str]:
  """The module's settings that packed rows (one prompt copy per example) cannot serve."""
  conflicts = [f"placement={module.placement!r}"] if module.placement != "prefix" else []
  if module.num_prompts:
    conflicts.append(f"num_prompts={module.num_prompts}")
  if module.multitask_prompt is not None:
    conflicts.append("a multi-task prompt")
  if module.deep_prompt is not None:
    conflicts.append("per-layer prompts")
  if module.decoder_prompt_length:
    conflicts.append("a decoder prompt")
  return conflicts


def build(cfg: t5.T5Config, prompt_length: int = 100, placement: str = "prefix",
          num_prompts: int = 0, multitask_prompt: Optional[nn.Module] = None,
          reparam_prompt: Optional[nn.Module] = None, ia3: Optional[nn.Module] = None,
          deep_prompt: Optional[nn.Module] = None,
          decoder_prompt: Optional[nn.Module] = None) -> PromptT5:
  """A checked PromptT5 with the methods of `prompt_tuning.model.extended` that are given:
  `multitask_prompt` / `reparam_prompt` compute the prompt in place of the plain one, `ia3`,
  `deep_prompt` and `decoder_prompt` act inside the encoder / decoder."""
  fields = ("emb_dim", "num_heads", "head_dim", "mlp_dim", "num_encoder_layers", "num_decoder_layers",
            "relative_attention_num_buckets", "relative_attention_max_distance")
  checks.check({"PROMPT_LENGTH": prompt_length, "VOCAB_SIZE": cfg.vocab_size, "DROPOUT_RATE": cfg.dropout_rate,
                "ACTIVATION_DTYPE": cfg.dtype, "SCAN_LAYERS": cfg.scan_layers,
                **{f"T5Config.{f}": getattr(cfg, f) for f in fields}})
  generators = [n for n, m in (("multitask_prompt", multitask_prompt), ("reparam_prompt", reparam_prompt))
                if m is not None]
  if len(generators) > 1:
    raise ConfigError(f"{' and '.join(generators)} both compute the prompt: choose one")
  if generators and num_prompts:
    raise ConfigError(f"{generators[0]} computes the prompt, so the model holds no prompt table: "
                      f"unset num_prompts ({num_prompts})")
  if generators and prompt_length < 1:
    raise ConfigError(f"{generators[0]} needs PROMPT_LENGTH >= 1, not {prompt_length}")
  if multitask_prompt is not None and multitask_prompt.combine == "concat":
    shared, task = multitask_prompt.lengths(prompt_length)
    if shared < 1 or task < 1:
      raise ConfigError(f"a concatenated multi-task prompt of PROMPT_LENGTH {prompt_length} leaves "
                        f"{shared} shared and {task} per-task positions: each needs at least 1")
  if deep_prompt is not None:
    if placement != "prefix" or prompt_length < 1:
      raise ConfigError(f"per-layer prompts take the positions of a prefix prompt, but this model has "
                        f"placement {placement!r} and PROMPT_LENGTH {prompt_length}: use "
                        "PROMPT_PLACEMENT='prefix' and PROMPT_LENGTH >= 1")
    outside = [i for i in deep_prompt.chosen(cfg.num_encoder_layers) if not 0 <= i < cfg.num_encoder_layers]
    if outside:
      raise ConfigError(f"per-layer prompt layers {outside} are not encoder layers: the encoder has "
                        f"layers 0..{cfg.num_encoder_layers - 1}")
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
  return PromptT5(cfg, prompt_length, placement, num_prompts, multitask_prompt, reparam_prompt, ia3,
                  deep_prompt, decoder_prompt)


def dummy_batch(batch: int, inputs_length: int, targets_length: int) -> dict[str, Array]:
  shape_in, shape_out = (batch, inputs_length), (batch, targets_length)
  return {"encoder_input_tokens": jnp.ones(shape_in, jnp.int32),
          "decoder_input_tokens": jnp.ones(shape_out, jnp.int32),
          "decoder_target_tokens": jnp.ones(shape_out, jnp.int32)}


def init_params(module: PromptT5, rng: Array, inputs_length: int = 8, targets_length: int = 4):
  """Random parameters (all of them, boxed with logical axes) — for tests and benchmarks."""
  batch = dummy_batch(1, inputs_length, targets_length)
  if module.num_prompts or module.multitask_prompt is not None:
    batch["prompt_ids"] = jnp.zeros((1,), jnp.int32)
  if module._reads_task_sentinel():  # <extra_id_0>: task 0
    batch["encoder_input_tokens"] = batch["encoder_input_tokens"].at[:, 0].set(
        module.multitask_prompt.vocab_size - 1)
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


def methods(module: PromptT5) -> dict[str, nn.Module]:
  """The module's methods of `prompt_tuning.model.extended` that are on, by field name."""
  return {name: getattr(module, name) for name in METHOD_FIELDS if getattr(module, name) is not None}


def has_plain_prompt(module: PromptT5) -> bool:
  """Whether `prompt/prompt` exists: a prompt that no method computes."""
  return module.prompt_length > 0 and module.multitask_prompt is None and module.reparam_prompt is None


def trainable_patterns(module: PromptT5) -> tuple[str, ...]:
  """TRAINABLE that tunes the module's prompt and methods (what each method's gin file sets)."""
  plain = (PROMPT_KEY + "/.*",) if has_plain_prompt(module) else ()
  return plain + tuple(f"{name}/.*" for name in methods(module))


def init_prompt(module: PromptT5, initializer: prompts_lib.Initializer, rng: Array,
                frozen: Params) -> dict:
  """Every parameter outside the backbone, initialized with access to the frozen embedding table:
  the plain prompt (from `initializer`) and each method's subtree (its `initial_params`)."""
  embedding = np.asarray(multihost.fetch(frozen["token_embedder"]["embedding"]), np.float32)
  prompt_rng, methods_rng = jax.random.split(rng)
  out = {}
  if has_plain_prompt(module):
    shape = prompts_lib.prompt_shape(module.prompt_length, module.cfg.emb_dim, module.num_prompts)
    # The prompt keeps the key it was drawn with before methods existed: same seed, same prompt.
    out[PROMPT_KEY] = {"prompt": jnp.asarray(initializer(rng, shape, embedding), jnp.float32)}
  for i, (name, method) in enumerate(sorted(methods(module).items())):
    key = prompt_rng if name in ("multitask_prompt", "reparam_prompt") else jax.random.fold_in(methods_rng, i)
    out[name] = method.initial_params(key, module, embedding, initializer)
  return out


def exported_prompt(module: PromptT5, trainable: Params) -> Optional[np.ndarray]:
  """What a prompt file holds for these trainable parameters: the prompt the encoder sees, float32
  [P, d] ([T, P, d] for a prompt table or a multi-task prompt's tasks); None without a prompt.
  A method that computes the prompt is run here once, so the file serves the plain model."""
  if module.prompt_length == 0:
    return None
  if has_plain_prompt(module):
    value = trainable[PROMPT_KEY]["prompt"]
  else:
    value = module.apply({"params": trainable}, method=module.effective_prompt)
  return np.asarray(multihost.fetch(value), np.float32)
