"""Throughput benchmark of the real prompt-tuning train step on random weights and tokens.

  python -m prompt_tuning.bench --sizes small,base --batch 32 --inputs-len 512 --targets-len 8 \
      --prompt-len 100

Prints one JSON object per size with the fields of the PEFT peer benchmark (`system`, `size`,
`batch`, `step_s`, `examples_per_s`, `tflops_per_s` from the same analytic FLOP count,
`peak_mem_gib`, `device`) plus XLA's own FLOP count and the fraction of the card's measured bf16
matmul throughput, and the activations the step saves for its backward pass. `--memory-only`
prints just weights and saved activations per size and remat, from shapes (runs on a CPU);
`--length-dist rte` adds real tokens/s on RTE-like lengths, padded vs bucketed vs packed.
`--compile-only` lowers and compiles the step on abstract weights and prints the seconds and XLA's
memory analysis (runs on a CPU); `--scan-layers yes|both` runs the layers as one scan.
`--trainable all` times model tuning instead (every weight trained, no prompt, float32 weights,
factored Adafactor: the step of runs/model_finetune.gin), the workload of the peer's `--mode full`;
with `--memory-only` it prints, per size, the bytes one device of `--mesh` holds of weights,
gradients and optimizer state (1-D or `--parameter-partitioning-dims 2` partitioning), with the
saved activations of the whole batch.
Needs only jax, flax, optax and numpy (no TensorFlow, seqio or gin).
"""
from __future__ import annotations

import argparse
import collections
import functools
import gc
import itertools
import json
import math
import re
import resource
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from prompt_tuning.model import layer_stack
from prompt_tuning.model import params as params_lib
from prompt_tuning.model import prompted as model_lib
from prompt_tuning.model import prompts
from prompt_tuning.model import t5
from prompt_tuning.parallel import partitioning
from prompt_tuning.training import footprint
from prompt_tuning.training import optim
from prompt_tuning.training import packing
from prompt_tuning.training import step as ts

# What each size keeps for backward at batch 32 x 612 tokens on an 80 GB card, from
# `python -m prompt_tuning.bench --memory-only` (weights + saved activations, README "Performance"):
# xl keeps everything in 45 GiB; xxl would need 99 GiB (65 GiB with "dots"), so it recomputes.
REMAT = {"small": "none", "base": "none", "large": "none", "xl": "none", "xxl": "full"}
# The peer script's extra size, for smoke runs on a CPU.
BENCH_SIZES = {**t5.SIZES, "tiny": dict(emb_dim=64, mlp_dim=128, num_encoder_layers=2,
                                        num_decoder_layers=2, num_heads=2, head_dim=32)}
REMAT["tiny"] = "none"
# Input lengths of RTE (SentencePiece tokens of "hypothesis: ... premise: ..."): quantiles used
# to draw a realistic length mix for the padding-waste measurement.
RTE_TARGET_TOKENS = 6  # "not_entailment" + EOS is 6 SentencePiece ids ("entailment" + EOS 5)
RTE_LENGTH_QUANTILES = [(0.0, 20), (0.1, 38), (0.25, 48), (0.5, 62), (0.75, 86), (0.9, 122),
                        (0.99, 220), (1.0, 290)]


def step_flops(cfg: t5.T5Config, batch: int, enc_len: int, dec_len: int, weight_grads=False) -> float:
  """Analytic matmul FLOPs of one step: forward, plus backward for activations (and weights)."""
  d, f, inner = cfg.emb_dim, cfg.mlp_dim, cfg.num_heads * cfg.head_dim
  n_in = len(cfg.mlp_activations)
  mlp = 2 * (n_in + 1) * d * f
  enc = cfg.num_encoder_layers * (enc_len * (2 * 4 * d * inner + mlp) + 4 * enc_len ** 2 * inner)
  dec_self = dec_len * 2 * 4 * d * inner + 4 * dec_len ** 2 * inner
  dec_cross = 2 * 2 * d * inner * (dec_len + enc_len) + 4 * dec_len * enc_len * inner
  dec = cfg.num_decoder_layers * (dec_self + dec_cross + dec_len * mlp)
  logits = 2 * dec_len * d * cfg.vocab_size
  return batch * (enc + dec + logits) * (3 if weight_grads else 2)


def _random_leaf(key, shape, dtype, kind):
  if kind == "scale":
    return jnp.ones(shape, dtype)
  scale = 1.0 if kind == "embedding" else 1.0 / math.sqrt(shape[0])
  return (jax.random.normal(key, shape, jnp.float32) * scale).astype(dtype)


def bench_config(size: str, remat: str, dtype: str, attention: str) -> t5.T5Config:
  return t5.T5Config(**BENCH_SIZES[size], dropout_rate=0.0, dtype=dtype, remat=remat,
                     attention=attention)


TRAINABLE = {"prompt": model_lib.DEFAULT_TRAINABLE, "all": (".*",)}


def abstract_params(module: model_lib.PromptT5, frozen_dtype, trainable=()) -> tuple[Any, Any]:
  """Shapes of (prompt, backbone weights), the backbone's frozen matrices stored as
  `model.cast_frozen` stores them (those matched by `trainable` stay float32)."""
  boxed = params_lib.abstract_params(module)
  prompt, frozen = model_lib.split(jax.tree.map(lambda b: b.value, boxed,
                                                is_leaf=lambda x: hasattr(x, "value")))
  return prompt, jax.eval_shape(lambda f: model_lib.cast_frozen(f, frozen_dtype, trainable), frozen)


def model_tuning_optimizer():
  """The optimizer of runs/model_finetune.gin."""
  return optim.adafactor(learning_rate=1e-3, weight_decay_rate=None, factored=True)


def random_frozen(module: model_lib.PromptT5, shardings, dtype, seed: int = 0, trainable=()):
  """Random backbone weights made in `dtype` (float32 where `trainable`) by one jitted call,
  already sharded (no f32 copy of frozen ones).

  Both layer layouts get the same values (scanned ones are the unrolled ones stacked), so a
  scanned and an unrolled run of one size report the same loss.
  """
  unrolled = module.clone(cfg=module.cfg.replace(scan_layers=False))
  leaves, treedef = jax.tree_util.tree_flatten_with_path(abstract_params(unrolled, dtype, trainable)[1])

  def make(key):
    out = [_random_leaf(jax.random.fold_in(key, i), leaf.shape, leaf.dtype, path[-1].key)
           for i, (path, leaf) in enumerate(leaves)]
    tree = jax.tree_util.tree_unflatten(treedef, out)
    return layer_stack.stack_layers(tree) if module.cfg.scan_layers else tree

  return jax.jit(make, out_shardings=shardings)(jax.random.PRNGKey(seed))


def abstract_inputs(module: model_lib.PromptT5, batch: int, inputs_len: int, targets_len: int,
                    frozen_dtype, trainable=model_lib.DEFAULT_TRAINABLE) -> tuple[Any, Any, dict]:
  """Shapes of (trainable parameters, frozen weights, batch) for tracing without allocating anything."""
  prompt, backbone = abstract_params(module, frozen_dtype, trainable)
  params, frozen = model_lib.split(model_lib.merge(prompt, backbone), trainable)
  lengths = {"encoder_input_tokens": inputs_len, "decoder_input_tokens": targets_len,
             "decoder_target_tokens": targets_len}
  data = {k: jax.ShapeDtypeStruct((batch, n), jnp.int32) for k, n in lengths.items()}
  return params, frozen, data


def saved_activations(module: model_lib.PromptT5, prompt, frozen, batch) -> list:
  """Shapes of what the forward pass keeps for the gradient of `prompt` (the trainable
  parameters; weights and inputs excluded; for float32 trainable weights their bf16 copies count).

  Read from the jaxpr of the step's VJP, so it is exact for the model as written and the same on
  every backend; the peak adds the weights and one layer's transient buffers to it.
  """
  def vjp_fn(p, f, b):
    return jax.vjp(lambda q: ts.loss_fn(q, f, b, None, module=module)[0], p)[1]
  jaxpr = jax.make_jaxpr(vjp_fn)(prompt, frozen, batch).jaxpr
  inputs = set(jaxpr.invars)
  saved = {v: v.aval for v in jaxpr.outvars if hasattr(v, "aval") and not hasattr(v, "val")
           and v not in inputs}
  return list(saved.values())


def gib(n_bytes: float) -> float:
  return round(n_bytes / 2 ** 30, 2)


_HLO_ARRAY = re.compile(r"\b(pred|bf16|[suf]\d+)\[([\d,]*)\]")
_HLO_INSTRUCTION = re.compile(r"^\s+(?:ROOT )?%([\w.\-]+) = (.+?) ([\w\-]+)\((.*)$")
_NO_WORK = {"parameter", "constant", "get-tuple-element", "tuple", "bitcast", "while", "call",
            "conditional", "after-all"}


def _hlo_bytes(shape: str) -> int:
  total = 0
  for dtype, dims in _HLO_ARRAY.findall(shape):
    size = 1 if dtype == "pred" else 2 if dtype == "bf16" else int(dtype[1:]) // 8
    total += size * math.prod(int(d) for d in dims.split(",") if d)
  return total


def hlo_bytes_by_class(hlo: str, score_len: int) -> dict[str, int]:
  """Bytes each class of instruction of a compiled step's HLO reads and writes (operands + result,
  as XLA's cost analysis counts them; a loop body once): `matmul` (a dot, or a fusion or library
  call around one), `reduce` and `elementwise` (every other fusion and op), with `/scores` where
  one of the arrays is [..., score_len, score_len], the attention scores."""
  bodies, body = {}, None
  for line in hlo.splitlines():
    if line[:1] not in ("", " ") and line.rstrip().endswith("{"):
      body = bodies.setdefault(line.split()[1 if line.startswith("ENTRY") else 0].lstrip("%"), [])
    elif body is not None and (m := _HLO_INSTRUCTION.match(line)):
      body.append(m.groups())
  shapes = {name: shape for insts in bodies.values() for name, shape, _, _ in insts}
  fused = set(re.findall(r"calls=%([\w.\-]+)", hlo))

  def kind(op, rest):
    ops = {op}
    if op == "fusion":
      ops = {o for _, _, o, _ in bodies.get(re.search(r"calls=%([\w.\-]+)", rest).group(1), [])}
    if ops & {"dot", "convolution"} or (op == "custom-call" and "gemm" in rest.lower()):
      return "matmul"
    return "reduce" if "reduce" in ops else "elementwise"

  out = collections.Counter()
  for name, insts in bodies.items():
    if name in fused:
      continue
    for _, shape, op, rest in insts:
      if op in _NO_WORK:
        continue
      arrays = [shape] + [shapes.get(o, "") for o in re.findall(r"%([\w.\-]+)", rest.split("),")[0])]
      scores = any(dims.endswith(f"{score_len},{score_len}") for a in arrays for _, dims in _HLO_ARRAY.findall(a))
      out[kind(op, rest) + ("/scores" if scores else "")] += sum(map(_hlo_bytes, arrays))
  return dict(out.most_common())


def memory_bytes(size: str, remat: str, args) -> tuple[int, int]:
  """(weight bytes, saved activation bytes) of one train step, from shapes alone."""
  return _memory_bytes(size, remat, args.batch, args.inputs_len, args.targets_len, args.prompt_len,
                       args.dtype, args.frozen_dtype, args.attention, getattr(args, "trainable", "prompt"))


@functools.lru_cache(maxsize=None)  # tracing XL/XXL takes seconds; auto remat and records share it
def _memory_bytes(size, remat, batch_size, inputs_len, targets_len, prompt_len, dtype, frozen_dtype,
                  attention, trainable="prompt") -> tuple[int, int]:
  module = model_lib.build(bench_config(size, remat, dtype, attention), prompt_length=prompt_len)
  params, frozen, batch = abstract_inputs(module, batch_size, inputs_len, targets_len,
                                          jnp.dtype(frozen_dtype), TRAINABLE[trainable])
  saved = saved_activations(module, params, frozen, batch)
  nbytes = lambda leaves: sum(x.size * jnp.dtype(x.dtype).itemsize for x in leaves)
  weights = frozen if trainable == "prompt" else {"trainable": params, "frozen": frozen}
  return nbytes(jax.tree.leaves(weights)), nbytes(saved)


def memory_record(size: str, remat: str, args) -> dict:
  weights, saved = memory_bytes(size, remat, args)
  rec = {"system": "prompt_tuning", "size": size, "batch": args.batch, "remat": remat,
         "inputs_len": args.inputs_len, "prompt_len": args.prompt_len,
         "weights_gib": gib(weights), "saved_activations_gib": gib(saved)}
  if args.trainable == "all":
    rec.update(trainable="all", **model_tuning_footprint(size, remat, args))
  return rec


def model_tuning_footprint(size: str, remat: str, args) -> dict:
  """GiB one device of --mesh holds of each part of the model-tuning state (no devices needed)."""
  data, model = (int(x) for x in args.mesh.split(","))
  if -1 in (data, model):
    raise ValueError("--memory-only needs an explicit --mesh, e.g. 8,1 (the memory per device depends on it)")
  mesh = jax.sharding.AbstractMesh((data, model), partitioning.AXES)
  module = model_lib.build(bench_config(size, remat, args.dtype, args.attention), prompt_length=args.prompt_len)
  rules = partitioning.logical_rules(parameter_partitioning_dims=args.parameter_partitioning_dims)
  parts = footprint.step_bytes(module, model_tuning_optimizer(), mesh, rules, TRAINABLE["all"], args.frozen_dtype)
  return {"mesh": [data, model], "parameter_partitioning_dims": args.parameter_partitioning_dims,
          **{f"{k}_gib_per_device": round(v / 2 ** 30, 3) for k, v in parts.items() if k != "frozen_weights"}}


# Share of the device's memory that weights + saved activations may take; the rest is for XLA's
# working buffers (one layer's float32 scores and their gradients at XXL are about 10 GiB).
MEMORY_HEADROOM = 0.7


def choose_remat(size: str, args, limit_bytes) -> str:
  """The least recomputation whose weights + saved activations fit the device's memory.

  Without a known limit (e.g. on a CPU) this is the 80 GB table `REMAT`.
  """
  if not limit_bytes:
    return REMAT[size]
  for remat in ("none", "dots"):
    if sum(memory_bytes(size, remat, args)) <= MEMORY_HEADROOM * limit_bytes:
      return remat
  return "full"


def device_memory_bytes():
  stats = jax.devices()[0].memory_stats() or {}
  return stats.get("bytes_limit")


def matmul_tflops(n: int = 8192, reps: int = 10) -> float:
  """Measured bf16 n^3 matmul throughput of the first device (the card's practical peak)."""
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.bfloat16)
  mm = jax.jit(lambda x: x @ x)
  mm(a).block_until_ready()
  t = time.perf_counter()
  for _ in range(reps):
    y = mm(a)
  y.block_until_ready()
  return 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e12


def peak_memory_gib():
  stats = jax.devices()[0].memory_stats() or {}
  peak = stats.get("peak_bytes_in_use")
  return None if peak is None else round(peak / 2 ** 30, 2)


def rte_lengths(n: int, seed: int = 0) -> np.ndarray:
  """Input lengths drawn by inverse-CDF from RTE's length quantiles."""
  qs, vals = zip(*RTE_LENGTH_QUANTILES)
  return np.interp(np.random.RandomState(seed).rand(n), qs, vals).astype(int)


def random_batch(batch: int, inputs_len: int, targets_len: int, lengths=None, seed: int = 0):
  rng = np.random.RandomState(seed)
  inputs = rng.randint(2, 32000, (batch, inputs_len)).astype(np.int32)
  if lengths is not None:
    inputs[np.arange(inputs_len)[None, :] >= np.asarray(lengths)[:, None]] = 0
  targets = rng.randint(2, 32000, (batch, targets_len)).astype(np.int32)
  return {"encoder_input_tokens": inputs,
          "decoder_input_tokens": np.pad(targets[:, :-1], ((0, 0), (1, 0))),
          "decoder_target_tokens": targets}


class StepRunner:
  """Builds the sharded model, optimizer state and compiled step for one configuration.

  With `allocate=False` it holds only shapes: `compile` then lowers and compiles the real step
  on abstract weights and state, and nothing is allocated (compile time and XLA's memory plan of
  any size, on any machine).
  """

  def __init__(self, cfg: t5.T5Config, prompt_len: int, mesh, frozen_dtype, allocate: bool = True,
               trainable: str = "prompt", parameter_partitioning_dims: int = 1):
    if trainable == "all":
      self._init_model_tuning(cfg, prompt_len, mesh, frozen_dtype, allocate, parameter_partitioning_dims)
    else:
      self._init_prompt_tuning(cfg, prompt_len, mesh, frozen_dtype, allocate)
    self.step = ts.partitioned_train_step(self.module, self.tx, mesh, self.rules, self.frozen_sh,
                                          self.state_sh, donate=True)
    self.compiled = {}

  def _init_prompt_tuning(self, cfg, prompt_len, mesh, frozen_dtype, allocate):
    self.module = model_lib.build(cfg, prompt_length=prompt_len)
    self.mesh, self.rules = mesh, partitioning.logical_rules()
    self.tx = optim.adafactor()
    _, self.frozen_sh = params_lib.shardings(self.module, mesh, self.rules)

    def new_state():
      prompt = prompts.random_uniform()(jax.random.PRNGKey(1), (prompt_len, cfg.emb_dim))
      return ts.TrainState.create({"prompt": {"prompt": prompt}}, self.tx)

    state = new_state() if allocate else jax.eval_shape(new_state)
    self.state_sh = ts.state_shardings(state, mesh)
    if allocate:
      self.frozen = random_frozen(self.module, self.frozen_sh, frozen_dtype)
      self.state = jax.device_put(state, self.state_sh)
    else:
      self.frozen, self.state = abstract_params(self.module, frozen_dtype)[1], state

  def _init_model_tuning(self, cfg, prompt_len, mesh, frozen_dtype, allocate, dims):
    """Every weight trains (float32, sharded as the rules say), with model tuning's Adafactor."""
    self.module = model_lib.build(cfg, prompt_length=prompt_len)
    self.mesh, self.rules = mesh, partitioning.logical_rules(parameter_partitioning_dims=dims)
    self.tx, trainable = model_tuning_optimizer(), TRAINABLE["all"]
    trained_sh, self.frozen_sh = params_lib.shardings(self.module, mesh, self.rules, trainable)
    prompt, backbone = abstract_params(self.module, frozen_dtype, trainable)
    if allocate:
      backbone = random_frozen(self.module, params_lib.shardings(self.module, mesh, self.rules)[1],
                               frozen_dtype, trainable=trainable)
      prompt = jax.tree.map(lambda x: jnp.full(x.shape, 0.1, x.dtype), prompt)  # a prompt trains too
    params, self.frozen = model_lib.split(model_lib.merge(prompt, backbone), trainable)
    if allocate:
      self.state, self.state_sh = ts.create_sharded(params, self.tx, mesh, trained_sh)
    else:
      self.state = jax.eval_shape(lambda p: ts.TrainState.create(p, self.tx), params)
      self.state_sh = ts.state_shardings(self.state, mesh, trained_sh)

  @staticmethod
  def shape_key(batch) -> tuple:
    return tuple(sorted((k, v.shape) for k, v in batch.items()))

  def compile(self, batch):
    key = self.shape_key(batch)
    if key not in self.compiled:
      with partitioning.activation_context(self.mesh, self.rules):
        lowered = self.step.jitted.lower(self.state, self.frozen, batch, None)
      self.compiled[key] = lowered.compile()
    return self.compiled[key]

  def run(self, batch, steps: int):
    compiled = self.compile(batch)
    batch = jax.device_put(batch, partitioning.batch_sharding(self.mesh))
    stats = None
    for _ in range(steps):
      self.state, stats = compiled(self.state, self.frozen, batch, None)
    jax.block_until_ready(self.state)
    return stats


def size_config(size: str, scan: bool, args) -> t5.T5Config:
  remat = args.remat if args.remat != "auto" else choose_remat(size, args, device_memory_bytes())
  return bench_config(size, remat, args.dtype, args.attention).replace(scan_layers=scan)


def xla_costs(compiled, args) -> dict:
  """XLA's FLOP and byte counts of a compiled step, and with --profile its bytes by class."""
  cost = compiled.cost_analysis()
  cost = (cost[0] if isinstance(cost, (list, tuple)) else cost) or {}
  out = {"xla_tflops_per_step": round(float(cost.get("flops", 0.0)) / 1e12, 3),
         "xla_gb_accessed_per_step": round(float(cost.get("bytes accessed", 0.0)) / 1e9, 1)}
  if args.profile:
    by_class = hlo_bytes_by_class(compiled.as_text(), args.inputs_len + args.prompt_len)
    out["gb_by_class"] = {k: round(v / 1e9, 1) for k, v in by_class.items()}
  return out


def compile_record(size: str, scan: bool, args, mesh) -> dict:
  """Seconds to lower and to compile the real train step on abstract weights (process CPU time
  too, which other work on the machine disturbs less than wall time) and XLA's memory plan."""
  cfg = size_config(size, scan, args)
  runner = StepRunner(cfg, args.prompt_len, mesh, jnp.dtype(args.frozen_dtype), allocate=False,
                      trainable=args.trainable, parameter_partitioning_dims=args.parameter_partitioning_dims)
  batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
                       random_batch(args.batch, args.inputs_len, args.targets_len))
  clocks = [(time.perf_counter(), time.process_time())]
  with partitioning.activation_context(mesh, runner.rules):
    lowered = runner.step.jitted.lower(runner.state, runner.frozen, batch, None)
  clocks.append((time.perf_counter(), time.process_time()))
  compiled = lowered.compile()
  clocks.append((time.perf_counter(), time.process_time()))
  (w0, c0), (w1, c1), (w2, c2) = clocks
  mem = compiled.memory_analysis()
  return {"system": "prompt_tuning", "mode": "compile", "size": size, "scan_layers": scan,
          "trainable": args.trainable,
          "remat": cfg.remat, "batch": args.batch, "inputs_len": args.inputs_len,
          "prompt_len": args.prompt_len, "lower_s": round(w1 - w0, 1), "compile_s": round(w2 - w1, 1),
          "lower_cpu_s": round(c1 - c0, 1), "compile_cpu_s": round(c2 - c1, 1),
          "temp_gib": gib(mem.temp_size_in_bytes), "argument_gib": gib(mem.argument_size_in_bytes),
          "output_gib": gib(mem.output_size_in_bytes), "alias_gib": gib(mem.alias_size_in_bytes),
          "code_mib": round(mem.generated_code_size_in_bytes / 2 ** 20, 1),
          "max_rss_gib": gib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024),
          "device": jax.devices()[0].device_kind, "jax": jax.__version__, **xla_costs(compiled, args)}


def bench_size(size: str, scan: bool, args, mesh, peak_tflops) -> dict:
  cfg = size_config(size, scan, args)
  remat = cfg.remat
  runner = StepRunner(cfg, args.prompt_len, mesh, jnp.dtype(args.frozen_dtype), trainable=args.trainable,
                      parameter_partitioning_dims=args.parameter_partitioning_dims)
  batch = random_batch(args.batch, args.inputs_len, args.targets_len)
  t = time.perf_counter()
  compiled = runner.compile(batch)
  compile_s = time.perf_counter() - t
  runner.run(batch, args.warmup)
  t = time.perf_counter()
  stats = runner.run(batch, args.steps)
  dt = (time.perf_counter() - t) / args.steps
  enc_len = args.inputs_len + args.prompt_len
  flops = step_flops(cfg, args.batch, enc_len, args.targets_len, weight_grads=args.trainable == "all")
  mem = compiled.memory_analysis()
  tflops = flops / dt / 1e12
  rec = {"system": "prompt_tuning", "size": size, "batch": args.batch, "inputs_len": args.inputs_len,
         "targets_len": args.targets_len, "prompt_len": args.prompt_len, "dtype": args.dtype,
         "frozen_dtype": args.frozen_dtype, "remat": remat, "attention": args.attention,
         "scan_layers": scan, "trainable": args.trainable,
         "parameter_partitioning_dims": args.parameter_partitioning_dims,
         "step_s": round(dt, 5), "examples_per_s": round(args.batch / dt, 2),
         "tflops_per_s": round(tflops, 2),
         "analytic_tflops_per_step": round(flops / 1e12, 3),
         "frac_of_matmul_peak": round(tflops / peak_tflops, 3) if peak_tflops else None,
         "temp_gib": round(mem.temp_size_in_bytes / 2 ** 30, 2) if mem else None,
         "saved_activations_gib": gib(memory_bytes(size, remat, args)[1]),
         "peak_mem_gib": peak_memory_gib(), "device": jax.devices()[0].device_kind,
         "num_devices": jax.device_count(), "compile_s": round(compile_s, 1),
         "loss": round(float(stats["loss"]), 4), **xla_costs(compiled, args)}
  if args.length_dist == "rte":
    rec.update(padding_waste(runner, args))
  return rec


def rte_batches(mode: str, lengths: np.ndarray, args) -> list[dict]:
  """`args.steps` full batches of examples drawn in order from `lengths`: padded, cut to a
  length bucket, or packed (steady state: packing's last, partly filled batch is not used)."""
  if mode == "packed":
    rng = np.random.RandomState(0)
    target_len = min(RTE_TARGET_TOKENS, args.targets_len)  # padded modes compute all targets_len
    examples = ((rng.randint(2, 32000, n), rng.randint(2, 32000, target_len)) for n in lengths)
    batches = packing.pack(examples, args.inputs_len + args.prompt_len,
                           packing.TARGETS_PER_ROW * args.targets_len, args.prompt_len, args.batch,
                           final=False)
    return list(itertools.islice(batches, args.steps))
  out = []
  for row in lengths[:args.batch * args.steps].reshape(args.steps, args.batch):
    length = args.inputs_len
    if mode == "bucketed":
      length = next(b for b in (64, 128, 256, 512, args.inputs_len) if b >= row.max())
    out.append(random_batch(args.batch, length, args.targets_len, lengths=row))
  return out


def real_tokens(batch: dict, prompt_len: int) -> int:
  """Input tokens of the batch's examples, without padding or prompt slots."""
  if "encoder_segment_ids" in batch:
    return int((batch["encoder_segment_ids"] > 0).sum()) - prompt_len * packing.num_examples(batch)
  return int((batch["encoder_input_tokens"] > 0).sum())


def padding_waste(runner: StepRunner, args) -> dict:
  """Real tokens/s on RTE-like lengths: padded to 512, cut to a length bucket, or packed."""
  out = {}
  lengths = rte_lengths(4 * args.batch * args.steps, seed=1)  # enough for `steps` packed batches
  for mode in ("pad_to_max", "bucketed", "packed"):
    batches = rte_batches(mode, lengths, args)
    for b in {runner.shape_key(b): b for b in batches}.values():  # compile every shape first
      runner.run(b, 1)
    t = time.perf_counter()
    for b in batches:
      runner.run(b, 1)
    seconds = time.perf_counter() - t
    out[f"real_tokens_per_s_{mode}"] = round(sum(real_tokens(b, args.prompt_len) for b in batches) / seconds, 1)
    out[f"examples_per_step_{mode}"] = round(sum(map(packing.num_examples, batches)) / len(batches), 2)
  for mode in ("bucketed", "packed"):
    out[f"{mode}_speedup"] = round(out[f"real_tokens_per_s_{mode}"] / out["real_tokens_per_s_pad_to_max"], 2)
  return out


def flag_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--sizes", default="base", help="comma list of " + ",".join(BENCH_SIZES))
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--inputs-len", type=int, default=512)
  p.add_argument("--targets-len", type=int, default=8)
  p.add_argument("--prompt-len", type=int, default=None,
                 help="prompt vectors (default: 100 for --trainable prompt, 0 for all)")
  p.add_argument("--steps", type=int, default=10)
  p.add_argument("--warmup", type=int, default=2)
  p.add_argument("--dtype", default="bfloat16", help="compute dtype")
  p.add_argument("--frozen-dtype", default="bfloat16", help="storage dtype of frozen matrices")
  p.add_argument("--remat", default="auto", choices=["auto", "none", "dots", "full"],
                 help="rematerialization per layer; auto = the least that fits the device's "
                      "memory (the 80 GB table REMAT where the memory is unknown)")
  p.add_argument("--attention", default="xla", choices=["xla", "fused", "cudnn"])
  p.add_argument("--mesh", default="-1,1", help="data,model mesh shape")
  p.add_argument("--length-dist", default="none", choices=["none", "rte"],
                 help="also measure real tokens/s on RTE-like lengths: padded, bucketed, packed")
  p.add_argument("--matmul-peak", action="store_true", help="measure the bf16 matmul peak first")
  p.add_argument("--memory-only", action="store_true",
                 help="no timing: weights and saved activations per size and remat (runs on a CPU)")
  p.add_argument("--compile-only", action="store_true",
                 help="no timing: lower and compile the train step on abstract weights (nothing is "
                      "allocated) and print seconds and XLA's memory analysis (runs on a CPU)")
  p.add_argument("--profile", action="store_true",
                 help="add the GB each class of instruction of the compiled step reads and writes "
                      "(matmul, reduce, elementwise; /scores: on attention scores)")
  p.add_argument("--scan-layers", default="no", choices=["no", "yes", "both"],
                 help="run each stack's layers as one scan (T5Config.scan_layers); both: scanned "
                      "first, then unrolled")
  p.add_argument("--trainable", default="prompt", choices=sorted(TRAINABLE),
                 help="prompt: prompt tuning (the frozen model); all: model tuning (every weight, "
                      "runs/model_finetune.gin's Adafactor), the peer's --mode full")
  p.add_argument("--parameter-partitioning-dims", type=int, default=1, choices=[1, 2],
                 help="2: weights also split over the data axis (T5X's 2-D partitioning, FSDP-style)")
  p.add_argument("--cache-dir", default=None, help="JAX persistent compilation cache")
  return p


def main(argv=None):
  parser = flag_parser()
  args = parser.parse_args(argv)
  if args.prompt_len is None:
    args.prompt_len = 0 if args.trainable == "all" else 100
  if args.compile_only and args.cache_dir:
    parser.error("--compile-only times compilation, which a compilation cache would skip: drop --cache-dir")
  if args.cache_dir:
    jax.config.update("jax_compilation_cache_dir", args.cache_dir)
  if args.memory_only:
    for size in args.sizes.split(","):
      for remat in ("none", "dots", "full") if args.remat == "auto" else (args.remat,):
        print(json.dumps(memory_record(size, remat, args)), flush=True)
    return 0
  shape = tuple(int(x) for x in args.mesh.split(","))
  devices = jax.devices() if -1 in shape else jax.devices()[:shape[0] * shape[1]]
  mesh = partitioning.create_mesh(shape, devices)
  peak = matmul_tflops() if args.matmul_peak and not args.compile_only else None
  if peak:
    print(json.dumps({"system": "matmul", "bf16_matmul_tflops": round(peak, 1),
                      "device": jax.devices()[0].device_kind}), flush=True)
  layouts = {"no": (False,), "yes": (True,), "both": (True, False)}[args.scan_layers]
  for size in args.sizes.split(","):
    for scan in layouts:
      try:
        rec = compile_record(size, scan, args, mesh) if args.compile_only else bench_size(
            size, scan, args, mesh, peak)
        print(json.dumps(rec), flush=True)
      except Exception as e:  # report and go on with the next size (e.g. out of memory)
        print(json.dumps({"system": "prompt_tuning", "size": size, "batch": args.batch,
                          "scan_layers": scan, "error": f"{type(e).__name__}: {str(e)[:300]}"}),
              flush=True)
      gc.collect()  # the previous configuration's weights and programs go before the next


if __name__ == "__main__":
  sys.exit(main())
