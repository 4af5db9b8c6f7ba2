"""T5 1.1 encoder-decoder in Flax with T5X's parameter names, so T5X checkpoints restore as-is.

Architecture of the released `t5_1_1_lm100k_*` checkpoints: RMS layer norm, gated-GELU MLP
without biases, one relative-position bias table per stack, untied embedding and logits layer,
no scaling of query logits (T5 folds 1/sqrt(d_kv) into the query initializer).

Every parameter and activation carries logical axis names (see `partitioning.py`), so the same
module runs on one device or sharded over a (data, model) mesh.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

Array = jax.Array
DType = Any
# Per-layer inputs of a stack's layers, each with a leading [num_layers] axis (methods of
# `prompt_tuning.model.extended` that act inside the layers): "key_scale", "value_scale",
# "mlp_scale" (encoder; the decoder's "self_key_scale", "self_value_scale", "cross_key_scale",
# "cross_value_scale", "mlp_scale"), and "prompt" [P, d] with "prompt_keep" (encoder inputs).
LayerHooks = Mapping[str, Array]


@dataclasses.dataclass(frozen=True)
class T5Config:
  """Sizes and numerics of a T5 1.1 network (field names follow T5X's `T5Config`)."""
  vocab_size: int = 32128
  emb_dim: int = 512
  num_heads: int = 6
  num_encoder_layers: int = 8
  num_decoder_layers: int = 8
  head_dim: int = 64
  mlp_dim: int = 1024
  mlp_activations: tuple[str, ...] = ("gelu", "linear")
  relative_attention_num_buckets: int = 32
  relative_attention_max_distance: int = 128
  dropout_rate: float = 0.1
  dtype: str = "bfloat16"  # compute dtype; logits, softmax and loss are float32
  remat: str = "none"  # "none" | "dots" | "full": see _maybe_remat
  # "xla": einsum + softmax; "fused": jax.nn.dot_product_attention (XLA implementation);
  # "cudnn": the same with cuDNN's fused kernel (NVIDIA GPUs only).
  attention: str = "xla"
  # True: each stack's layers are one `nn.scan` over parameters stacked on a leading `layers`
  # axis (one layer body to compile instead of 24); `layer_stack` converts to and from the
  # checkpoints' `layers_{i}` names.
  scan_layers: bool = False

  @property
  def compute_dtype(self):
    return jnp.dtype(self.dtype)

  def replace(self, **kw) -> "T5Config":
    return dataclasses.replace(self, **kw)


# The paper's §3 sizes (T5X `t5_1_1/{small,...}.gin`); dropout is set per run.
SIZES: dict[str, dict[str, int]] = {
    "small": dict(emb_dim=512, mlp_dim=1024, num_encoder_layers=8, num_decoder_layers=8, num_heads=6),
    "base": dict(emb_dim=768, mlp_dim=2048, num_encoder_layers=12, num_decoder_layers=12, num_heads=12),
    "large": dict(emb_dim=1024, mlp_dim=2816, num_encoder_layers=24, num_decoder_layers=24, num_heads=16),
    "xl": dict(emb_dim=2048, mlp_dim=5120, num_encoder_layers=24, num_decoder_layers=24, num_heads=32),
    "xxl": dict(emb_dim=4096, mlp_dim=10240, num_encoder_layers=24, num_decoder_layers=24, num_heads=64),
}


def config_for(size: str, **overrides) -> T5Config:
  """The T5 1.1 config of a named size ('small' ... 'xxl'), with overrides."""
  if size not in SIZES:
    raise ValueError(f"unknown T5 1.1 size {size!r}; choose one of {', '.join(SIZES)}")
  return T5Config(**{**SIZES[size], **overrides})


def param_count(cfg: T5Config) -> int:
  """Analytic count of the frozen parameters (the paper's Table 4 formula)."""
  d, f, inner = cfg.emb_dim, cfg.mlp_dim, cfg.num_heads * cfg.head_dim
  n_mlp_in = len(cfg.mlp_activations)
  rel = cfg.relative_attention_num_buckets * cfg.num_heads
  enc = cfg.num_encoder_layers * (4 * d * inner + (n_mlp_in + 1) * d * f + 2 * d) + d + rel
  dec = cfg.num_decoder_layers * (8 * d * inner + (n_mlp_in + 1) * d * f + 3 * d) + d + rel
  return 2 * cfg.vocab_size * d + enc + dec


# ----------------------------------------------------------------------------- building blocks


def _partitioned(init: Callable, axes: tuple[str, ...]) -> Callable:
  return nn.with_logical_partitioning(init, axes)


def constrain(x: Array, axes: tuple[Optional[str], ...]) -> Array:
  """Annotates an activation with logical axes (a no-op outside a mesh/rules context)."""
  return nn.with_logical_constraint(x, axes)


class RMSNorm(nn.Module):
  """T5 layer norm: scale only, no mean subtraction, variance in float32."""
  dtype: DType = jnp.float32
  epsilon: float = 1e-6

  @nn.compact
  def __call__(self, x: Array) -> Array:
    scale = self.param("scale", _partitioned(nn.initializers.ones, ("embed",)), (x.shape[-1],),
                       jnp.float32)
    return rms_norm(x, scale, jnp.dtype(self.dtype), self.epsilon)


def _rms_norm(x: Array, scale: Array, dtype, epsilon: float) -> Array:
  x32 = jnp.asarray(x, jnp.float32)
  var = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
  y = jnp.asarray(x32 * jax.lax.rsqrt(var + epsilon), dtype)
  return y * jnp.asarray(scale, dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def rms_norm(x: Array, scale: Array, dtype, epsilon: float) -> Array:
  """T5's RMS norm; its backward pass keeps only `x` as it came in (bf16 in training), not a
  float32 copy, and recomputes the normalizer."""
  return _rms_norm(x, scale, dtype, epsilon)


def _rms_norm_fwd(x, scale, dtype, epsilon):
  return _rms_norm(x, scale, dtype, epsilon), (x, scale)


def _rms_norm_bwd(dtype, epsilon, saved, grad):
  x, scale = saved
  x32 = x.astype(jnp.float32)
  r = jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + epsilon)
  normed = x32 * r
  g = grad.astype(jnp.float32)
  g_normed = g * scale.astype(dtype).astype(jnp.float32)
  dx = r * (g_normed - normed * jnp.mean(g_normed * normed, axis=-1, keepdims=True))
  dscale = jnp.sum(g * normed.astype(dtype).astype(jnp.float32), axis=tuple(range(x.ndim - 1)))
  return dx.astype(x.dtype), dscale.astype(scale.dtype)


rms_norm.defvjp(_rms_norm_fwd, _rms_norm_bwd)


class Dense(nn.Module):
  """Bias-free projection with a 2-D kernel, stored as T5X stores it ([in, out])."""
  features: int
  kernel_axes: tuple[str, str]
  kernel_init: Callable = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")
  dtype: DType = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kernel = self.param("kernel", _partitioned(self.kernel_init, self.kernel_axes),
                        (x.shape[-1], self.features), jnp.float32)
    return jnp.dot(jnp.asarray(x, self.dtype), jnp.asarray(kernel, self.dtype))


def relative_position_bucket(relative_position: np.ndarray, bidirectional: bool, num_buckets: int,
                             max_distance: int) -> np.ndarray:
  """T5's log-spaced bucketing of (key position - query position)."""
  n = -relative_position
  ret = np.zeros_like(n)
  if bidirectional:
    num_buckets //= 2
    ret += (n < 0).astype(n.dtype) * num_buckets
    n = np.abs(n)
  else:
    n = np.maximum(n, 0)
  max_exact = num_buckets // 2
  is_small = n < max_exact
  large = max_exact + (np.log(n.astype(np.float32) / max_exact + np.finfo(np.float32).eps)
                       / np.log(max_distance / max_exact) * (num_buckets - max_exact)).astype(n.dtype)
  large = np.minimum(large, num_buckets - 1)
  return ret + np.where(is_small, n, large)


class RelativePositionBias(nn.Module):
  """One learned bias per (head, bucket), shared by all layers of a stack."""
  num_buckets: int
  max_distance: int
  num_heads: int
  bidirectional: bool

  @nn.compact
  def __call__(self, q_len: int, k_len: int, q_offset: Array | int = 0) -> Array:
    table = self.param(
        "rel_embedding",
        _partitioned(nn.initializers.variance_scaling(1.0, "fan_avg", "uniform"), ("heads", "relpos_buckets")),
        (self.num_heads, self.num_buckets), jnp.float32)
    if isinstance(q_offset, int):  # static shapes: bucket ids are numpy constants
      rel = np.arange(k_len)[None, :] - (np.arange(q_len)[:, None] + q_offset)
      buckets = jnp.asarray(relative_position_bucket(rel, self.bidirectional, self.num_buckets,
                                                     self.max_distance))
    else:  # cached decoding at a dynamic offset: rows of the same static [k, k] bucket table
      rel = np.arange(k_len)[None, :] - np.arange(k_len)[:, None]
      full = jnp.asarray(relative_position_bucket(rel, self.bidirectional, self.num_buckets,
                                                  self.max_distance))
      buckets = jax.lax.dynamic_slice_in_dim(full, q_offset, q_len, axis=0)
    return jnp.take(table, buckets, axis=1)[None]  # [1, heads, q, k], float32


def segment_mask(q_segments: Array, k_segments: Array) -> Array:
  """[b, 1, q, k]: a query attends to keys of its own segment; segment 0 is padding."""
  return ((q_segments[:, :, None] == k_segments[:, None, :]) & (k_segments[:, None, :] > 0))[:, None]


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def softmax_as(logits: Array, dtype) -> Array:
  """Softmax over the last axis computed in float32 and returned in `dtype`.

  The backward pass keeps only these `dtype` probabilities (2 bytes per score in bf16) instead
  of the float32 logits, their exponentials and the cast copy (10 bytes): attention scores are
  the largest activations of a prompt-tuning step, and the saved ones bound its memory.
  """
  return jax.nn.softmax(logits, axis=-1).astype(dtype)


def _softmax_as_fwd(logits, dtype):
  probs = softmax_as(logits, dtype)
  return probs, probs


def _softmax_as_bwd(dtype, probs, grad):
  p, g = probs.astype(jnp.float32), grad.astype(jnp.float32)
  return (p * (g - jnp.sum(g * p, axis=-1, keepdims=True)),)


softmax_as.defvjp(_softmax_as_fwd, _softmax_as_bwd)


def attend(q: Array, k: Array, v: Array, mask: Optional[Array], position_bias: Optional[Array],
           dropout_rng: Optional[Array], *, dtype, dropout_rate: float) -> Array:
  """softmax(q k^T + position bias, masked) v for [b, len, heads, d_kv] inputs.

  q k^T comes out of the matmul in the compute dtype (accumulated in float32 inside it); the
  bias, the mask and the softmax are float32. A float32 matmul output would double the bytes of
  the largest tensors of the step ([b, h, q, k] per layer) and make the backward pass's two
  score matmuls (for the query and key gradients) float32 ones; T5X and Hugging Face T5 round
  the scores to bf16 as well, and then also add the bias in bf16.
  """
  logits = jnp.einsum("bqhd,bkhd->bhqk", q, k).astype(jnp.float32)
  if position_bias is not None:
    logits = logits + position_bias
  if mask is not None:  # additive, so the backward pass keeps no [b, h, q, k] mask
    logits = logits + jnp.where(mask, 0.0, -1e10).astype(jnp.float32)
  weights = softmax_as(logits, dtype)
  if dropout_rate > 0:
    keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, weights.shape)
    weights = weights * keep.astype(dtype) / jnp.asarray(1.0 - dropout_rate, dtype)
  return jnp.einsum("bhqk,bkhd->bqhd", weights, v)


# T5Config.attention -> jax.nn.dot_product_attention's `implementation`.
FUSED = {"fused": None, "cudnn": "cudnn"}


class Attention(nn.Module):
  """Multi-head attention with T5X parameter names (query/key/value/out) and an optional KV cache."""
  num_heads: int
  head_dim: int
  dropout_rate: float
  dtype: DType
  impl: str = "xla"
  memory_cache: bool = False  # cross-attention: when decoding, project the encoding once

  @nn.compact
  def __call__(self, q_in: Array, kv_in: Array, mask: Optional[Array],
               position_bias: Optional[Array], deterministic: bool,
               decode: bool | str = False, key_scale: Optional[Array] = None,
               value_scale: Optional[Array] = None) -> Array:
    """`mask` is boolean [b, 1, 1|q, k]; `position_bias` is float32 [1, h, q, k].

    The two are combined inside the attention (not into one [b, h, q, k] tensor beforehand),
    so no batch-by-heads bias is materialized, stored for backward or read by every layer.
    `key_scale` / `value_scale` [heads * head_dim] multiply the projected keys / values (IA3),
    before they are cached.
    """
    inner = self.num_heads * self.head_dim
    fan_in = nn.initializers.variance_scaling(1.0, "fan_in", "normal")

    def query_init(key, shape, dtype):  # T5 folds the 1/sqrt(d_kv) logit scale into the init
      return fan_in(key, shape, dtype) / math.sqrt(self.head_dim)

    dense = functools.partial(Dense, dtype=self.dtype)
    b = q_in.shape[0]
    split = lambda x: constrain(x.reshape(b, x.shape[1], self.num_heads, self.head_dim),
                                ("batch", "length", "heads", "kv"))
    q = split(dense(inner, ("embed", "joined_kv"), kernel_init=query_init, name="query")(q_in))
    key = dense(inner, ("embed", "joined_kv"), kernel_init=fan_in, name="key")
    value = dense(inner, ("embed", "joined_kv"), kernel_init=fan_in, name="value")
    project = lambda: (split(_scaled(key(kv_in), key_scale)), split(_scaled(value(kv_in), value_scale)))
    if decode and self.memory_cache:
      k, v = self._memory_kv(kv_in, project, decode == "prefill")
    else:
      k, v = project()
    if decode and not self.memory_cache:
      k, v = self._extend_cache(k, v)
    if self.impl in FUSED and (deterministic or self.dropout_rate == 0):
      bias = None if position_bias is None else position_bias.astype(self.dtype)
      keys = {"mask": mask}
      if mask is not None and mask.shape[1:3] == (1, 1):
        # A key-padding mask (right-padded, as every one this model builds is): key lengths let
        # the kernel mask by itself, where a mask would be added to the bias as [b, h, q, k].
        keys = {"key_value_seq_lengths": jnp.sum(mask[:, 0, 0, :], axis=-1, dtype=jnp.int32)}
      out = jax.nn.dot_product_attention(q, k, v, bias=bias, scale=1.0,
                                         implementation=FUSED[self.impl], **keys)
    else:
      rate = 0.0 if deterministic else self.dropout_rate
      out = attend(q, k, v, mask, position_bias, self.make_rng("dropout") if rate > 0 else None,
                   dtype=jnp.dtype(self.dtype), dropout_rate=rate)
    out = constrain(out, ("batch", "length", "heads", "kv")).reshape(b, -1, inner)
    return dense(q_in.shape[-1], ("joined_kv", "embed"), kernel_init=fan_in, name="out")(out)

  def _memory_kv(self, kv_in: Array, project: Callable, prefill: bool):
    """The encoding's keys/values, projected once ("prefill") and then read from the cache."""
    shape = kv_in.shape[:2] + (self.num_heads, self.head_dim)
    is_init = not self.has_variable("cache", "memory_key")
    mk = self.variable("cache", "memory_key", jnp.zeros, shape, self.dtype)
    mv = self.variable("cache", "memory_value", jnp.zeros, shape, self.dtype)
    if is_init or prefill:
      mk.value, mv.value = project()
    return mk.value, mv.value

  def _extend_cache(self, k: Array, v: Array):
    """Cached decoding: writes these q_len steps' keys/values at `cache_index`, attends to all.

    The first call (no `cache` collection yet, e.g. under `jax.eval_shape`) gets full-length
    inputs and only shapes the cache; the caller's mask hides the not-yet-written slots.
    """
    is_init = not self.has_variable("cache", "cached_key")
    ck = self.variable("cache", "cached_key", jnp.zeros, k.shape, k.dtype)
    cv = self.variable("cache", "cached_value", jnp.zeros, v.shape, v.dtype)
    idx = self.variable("cache", "cache_index", lambda: jnp.array(0, jnp.int32))
    if is_init:
      return k, v
    i = idx.value
    ck.value = jax.lax.dynamic_update_slice(ck.value, k.astype(ck.value.dtype), (0, i, 0, 0))
    cv.value = jax.lax.dynamic_update_slice(cv.value, v.astype(cv.value.dtype), (0, i, 0, 0))
    idx.value = i + k.shape[1]
    return ck.value, cv.value


def _scaled(x: Array, scale: Optional[Array]) -> Array:
  """x * scale over the last axis (IA3's learned scaling vectors); x when there is none."""
  return x if scale is None else x * scale.astype(x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def gated_activation(gate: Array, linear: Array, activation: str) -> Array:
  """act(gate) * linear. The backward pass keeps only the two inputs and recomputes the
  activation and its derivative in float32, instead of every intermediate of the activation."""
  return getattr(nn, activation)(gate) * linear


def _gated_fwd(gate, linear, activation):
  return gated_activation(gate, linear, activation), (gate, linear)


def _gated_bwd(activation, saved, grad):
  gate, linear = saved
  act, d_act = jax.jvp(getattr(nn, activation), (gate.astype(jnp.float32),),
                       (jnp.ones(gate.shape, jnp.float32),))
  g = grad.astype(jnp.float32)
  return (g * linear.astype(jnp.float32) * d_act).astype(gate.dtype), (g * act).astype(linear.dtype)


gated_activation.defvjp(_gated_fwd, _gated_bwd)


class GatedMlp(nn.Module):
  """Gated-GELU MLP: wo(gelu(wi_0 x) * wi_1 x), no biases."""
  mlp_dim: int
  activations: tuple[str, ...]
  dropout_rate: float
  dtype: DType

  @nn.compact
  def __call__(self, x: Array, deterministic: bool, hidden_scale: Optional[Array] = None) -> Array:
    """`hidden_scale` [mlp_dim] multiplies the hidden activations (IA3)."""
    init = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")
    ys = []
    for i in range(len(self.activations)):
      name = f"wi_{i}" if len(self.activations) > 1 else "wi"
      ys.append(Dense(self.mlp_dim, ("embed", "mlp"), kernel_init=init, dtype=self.dtype, name=name)(x))
    if tuple(self.activations[1:]) == ("linear",) and self.activations[0] != "linear":
      h = gated_activation(ys[0], ys[1], self.activations[0])  # T5 1.1's gated GELU
    else:
      h = 1.0
      for y, act in zip(ys, self.activations):
        h = h * (y if act == "linear" else getattr(nn, act)(y))
    h = constrain(_scaled(h, hidden_scale), ("batch", "length", "mlp"))
    h = nn.Dropout(self.dropout_rate, broadcast_dims=(-2,))(h, deterministic=deterministic)
    return Dense(x.shape[-1], ("mlp", "embed"), kernel_init=init, dtype=self.dtype, name="wo")(h)


class EncoderLayer(nn.Module):
  cfg: T5Config

  @nn.compact
  def __call__(self, x: Array, mask: Array, position_bias: Array, deterministic: bool,
               hooks: Optional[LayerHooks] = None) -> Array:
    c, dt = self.cfg, self.cfg.compute_dtype
    hooks = hooks or {}
    if "prompt" in hooks:
      x = _layer_prompt(x, hooks["prompt"], hooks["prompt_keep"])
    drop = nn.Dropout(c.dropout_rate, broadcast_dims=(-2,))
    h = RMSNorm(dt, name="pre_attention_layer_norm")(x)
    h = Attention(c.num_heads, c.head_dim, c.dropout_rate, dt, c.attention, name="attention")(
        h, h, mask, position_bias, deterministic, key_scale=hooks.get("key_scale"),
        value_scale=hooks.get("value_scale"))
    x = x + drop(h, deterministic=deterministic)
    h = RMSNorm(dt, name="pre_mlp_layer_norm")(x)
    h = GatedMlp(c.mlp_dim, c.mlp_activations, c.dropout_rate, dt, name="mlp")(
        h, deterministic, hooks.get("mlp_scale"))
    x = x + drop(h, deterministic=deterministic)
    return _layer_output(c, constrain(x, ("batch", "length", "embed")))


class DecoderLayer(nn.Module):
  cfg: T5Config

  @nn.compact
  def __call__(self, y: Array, encoded: Array, self_mask: Optional[Array], position_bias: Array,
               cross_mask: Array, deterministic: bool, decode: bool | str = False,
               hooks: Optional[LayerHooks] = None) -> Array:
    c, dt = self.cfg, self.cfg.compute_dtype
    hooks = hooks or {}
    drop = nn.Dropout(c.dropout_rate, broadcast_dims=(-2,))
    attn = functools.partial(Attention, c.num_heads, c.head_dim, c.dropout_rate, dt, c.attention)
    h = RMSNorm(dt, name="pre_self_attention_layer_norm")(y)
    h = attn(name="self_attention")(h, h, self_mask, position_bias, deterministic, decode=decode,
                                    key_scale=hooks.get("self_key_scale"),
                                    value_scale=hooks.get("self_value_scale"))
    y = y + drop(h, deterministic=deterministic)
    h = RMSNorm(dt, name="pre_cross_attention_layer_norm")(y)
    h = attn(name="encoder_decoder_attention", memory_cache=True)(
        h, encoded, cross_mask, None, deterministic, decode=decode,
        key_scale=hooks.get("cross_key_scale"), value_scale=hooks.get("cross_value_scale"))
    y = y + drop(h, deterministic=deterministic)
    h = RMSNorm(dt, name="pre_mlp_layer_norm")(y)
    h = GatedMlp(c.mlp_dim, c.mlp_activations, c.dropout_rate, dt, name="mlp")(
        h, deterministic, hooks.get("mlp_scale"))
    y = y + drop(h, deterministic=deterministic)
    return _layer_output(c, constrain(y, ("batch", "length", "embed")))


def _layer_prompt(x: Array, prompt: Array, keep: Array) -> Array:
  """The layer's input with its first P positions (a prefix prompt's) set to keep * x + prompt:
  keep 0 replaces them with this layer's prompt, keep 1 adds it (0 leaves them as they are)."""
  length = prompt.shape[0]
  head = x[:, :length] * keep.astype(x.dtype) + prompt.astype(x.dtype)[None]
  return jnp.concatenate([head, x[:, length:]], axis=1)


def _layer_output(cfg: T5Config, x: Array):
  """A layer's output: the next layer's input, and under `nn.scan` also no per-layer output."""
  return (x, None) if cfg.scan_layers else x


# T5Config.remat -> what each layer keeps for the backward pass (None: only its input).
REMAT_POLICIES = {"dots": jax.checkpoint_policies.dots_with_no_batch_dims_saveable, "full": None}
LAYERS_AXIS = "layers"  # logical name of the stacked dimension of scanned parameters


def _maybe_remat(layer_cls, cfg: T5Config, static_argnums: tuple[int, ...]):
  """`remat`: "none" keeps every activation the backward pass needs; "dots" keeps only matmul
  outputs (the attention probabilities are recomputed); "full" keeps only each layer's input."""
  if cfg.remat == "none":
    return layer_cls
  if cfg.remat not in REMAT_POLICIES:
    raise ValueError(f"unknown remat {cfg.remat!r}; choose none, {', '.join(REMAT_POLICIES)}")
  # Inside a scan the loop already keeps XLA from merging the recomputation into the forward
  # pass, so remat's own barriers (prevent_cse) would only cost fusion opportunities.
  return nn.remat(layer_cls, policy=REMAT_POLICIES[cfg.remat], static_argnums=static_argnums,
                  prevent_cse=not cfg.scan_layers)


def _layers(layer_cls, cfg: T5Config, num_layers: int, static_argnums: tuple[int, ...]):
  """Calls the stack's layers in order: `layers_0`, `layers_1`, ... or, with `scan_layers`, one
  `nn.scan` named `layers` whose parameters (and decoding cache) gain a leading layers axis.

  Every argument after the carried activation is the same for all layers (`nn.broadcast`), so
  the shared relative-position bias is computed once per stack and read by every iteration;
  only `hooks` (per-layer arrays with a leading layers axis, see `LayerHooks`) differ: layer i
  reads their row i (scanned over, as the parameters are).
  """
  layer = _maybe_remat(layer_cls, cfg, static_argnums)

  def run(x, *args, hooks: Optional[LayerHooks] = None):
    hooks = dict(hooks or {})
    if cfg.scan_layers:
      scanned = nn.scan(layer, variable_axes={"params": 0, "cache": 0},
                        split_rngs={"params": True, "dropout": True},
                        in_axes=(nn.broadcast,) * len(args) + (0,), length=num_layers,
                        metadata_params={nn.PARTITION_NAME: LAYERS_AXIS})
      return scanned(cfg, name="layers")(x, *args, hooks)[0]
    for i in range(num_layers):
      x = layer(cfg, name=f"layers_{i}")(x, *args, {k: v[i] for k, v in hooks.items()})
    return x
  return run


class Encoder(nn.Module):
  """The encoder stack over already-embedded inputs (so a prompt can be combined first)."""
  cfg: T5Config

  @nn.compact
  def __call__(self, x: Array, mask: Array, deterministic: bool,
               segment_ids: Optional[Array] = None, hooks: Optional[LayerHooks] = None) -> Array:
    """`mask` [b, L] marks real positions; with packed rows, `segment_ids` [b, L] keeps attention
    inside each example (relative positions need nothing: a segment's positions are contiguous).
    `hooks`: per-layer arrays the layers apply (`LayerHooks`)."""
    c = self.cfg
    length = x.shape[1]
    rel = RelativePositionBias(c.relative_attention_num_buckets, c.relative_attention_max_distance,
                               c.num_heads, bidirectional=True, name="relpos_bias")(length, length)
    if segment_ids is None:
      attn_mask = mask[:, None, None, :]  # [b, 1, 1, k]
    else:
      attn_mask = segment_mask(segment_ids, segment_ids)  # [b, 1, q, k]
    x = nn.Dropout(c.dropout_rate, broadcast_dims=(-2,))(x, deterministic=deterministic)
    x = constrain(x.astype(c.compute_dtype), ("batch", "length", "embed"))
    x = _layers(EncoderLayer, c, c.num_encoder_layers, static_argnums=(4,))(
        x, attn_mask, rel, deterministic, hooks=hooks)
    x = RMSNorm(c.compute_dtype, name="encoder_norm")(x)
    return nn.Dropout(c.dropout_rate, broadcast_dims=(-2,))(x, deterministic=deterministic)


class Decoder(nn.Module):
  """The decoder stack and the untied logits layer; float32 logits."""
  cfg: T5Config

  @nn.compact
  def __call__(self, y: Array, encoded: Array, self_mask: Optional[Array], cross_mask: Array,
               deterministic: bool, decode: bool | str = False,
               hooks: Optional[LayerHooks] = None) -> Array:
    c = self.cfg
    q_len = y.shape[1]
    k_len, position = q_len, 0
    if decode:  # cached: y holds the q_len tokens at positions cache_index, cache_index + 1, ...
      stepping = self.has_variable("cache", "cache_index")
      # The shape of `kv_length` records the cache length, a static shape under jit.
      kv_length = self.variable("cache", "kv_length", jnp.zeros, (q_len,), jnp.int8)
      index = self.variable("cache", "cache_index", lambda: jnp.array(0, jnp.int32))
      if stepping:
        k_len, position = kv_length.value.shape[0], index.value
        index.value = position + q_len
    rel = RelativePositionBias(c.relative_attention_num_buckets, c.relative_attention_max_distance,
                               c.num_heads, bidirectional=False, name="relpos_bias")(
                                   q_len, k_len, position)
    if decode and not isinstance(position, int):  # causal over the cache: key <= own position
      q_pos = position + jnp.arange(q_len)[:, None]
      self_mask = (jnp.arange(k_len)[None, :] <= q_pos)[None, None]
    y = nn.Dropout(c.dropout_rate, broadcast_dims=(-2,))(y, deterministic=deterministic)
    y = constrain(y.astype(c.compute_dtype), ("batch", "length", "embed"))
    y = _layers(DecoderLayer, c, c.num_decoder_layers, static_argnums=(6, 7))(
        y, encoded, self_mask, rel, cross_mask, deterministic, decode, hooks=hooks)
    y = RMSNorm(c.compute_dtype, name="decoder_norm")(y)
    y = nn.Dropout(c.dropout_rate, broadcast_dims=(-2,))(y, deterministic=deterministic)
    logits = Dense(c.vocab_size, ("embed", "vocab"), dtype=c.compute_dtype, name="logits_dense",
                   kernel_init=nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal"))(y)
    return constrain(logits.astype(jnp.float32), ("batch", "length", "vocab"))


class Embed(nn.Module):
  """Token embedding table `token_embedder/embedding` [vocab, d]."""
  vocab_size: int
  features: int
  dtype: DType

  def setup(self):
    self.embedding = self.param(
        "embedding", _partitioned(nn.initializers.normal(1.0), ("vocab", "embed")),
        (self.vocab_size, self.features), jnp.float32)

  def __call__(self, ids: Array) -> Array:
    return jnp.take(jnp.asarray(self.embedding, self.dtype), ids, axis=0)
