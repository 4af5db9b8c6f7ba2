"""The benchmark's FLOP count, and that every speed lever leaves the train step's numerics alone."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_tuning import bench
from prompt_tuning.model import prompted as model_lib
from prompt_tuning.model import prompts
from prompt_tuning.training import optim
from prompt_tuning.training import step as ts
from tests import tiny


def test_analytic_flops_agree_with_xla_cost_analysis():
  cfg = tiny.tiny_config(vocab_size=256, emb_dim=64, mlp_dim=128, num_heads=2, head_dim=32)
  module = model_lib.build(cfg, prompt_length=8)
  prompt, frozen = model_lib.split(tiny.random_params(module))
  batch = bench.random_batch(4, 56, 8)
  batch = {k: jnp.asarray(np.minimum(v, 255)) for k, v in batch.items()}
  tx = optim.adafactor()
  state = ts.TrainState.create(prompt, tx)
  step = jax.jit(lambda s: ts.train_step(s, frozen, batch, None, module=module, tx=tx))
  cost = step.lower(state).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  analytic = bench.step_flops(cfg, 4, 64, 8)
  assert 0.9 < cost["flops"] / analytic < 1.25  # XLA also counts softmax/norm elementwise work
  assert bench.step_flops(cfg, 4, 64, 8, weight_grads=True) == 1.5 * analytic


def test_bytes_by_instruction_class_add_up_to_xla_cost_analysis():
  cfg = tiny.tiny_config(vocab_size=256, emb_dim=64, mlp_dim=128, num_heads=2, head_dim=32)
  module = model_lib.build(cfg, prompt_length=8)
  prompt, frozen = model_lib.split(tiny.random_params(module))
  batch = {k: jnp.asarray(np.minimum(v, 255)) for k, v in bench.random_batch(4, 56, 8).items()}
  grad = jax.jit(jax.grad(lambda p: ts.loss_fn(p, frozen, batch, None, module=module)[0]))
  compiled = grad.lower(prompt).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  by_class = bench.hlo_bytes_by_class(compiled.as_text(), 64)  # 56 inputs + 8 prompt
  assert sum(by_class.values()) == pytest.approx(cost["bytes accessed"], rel=0.01)
  assert by_class["matmul/scores"] > 0 and by_class["matmul"] > 0 and by_class["elementwise"] > 0
  assert not any(k.endswith("/scores") for k in bench.hlo_bytes_by_class(compiled.as_text(), 63))


def test_paper_size_flops_equal_the_peer_scripts_count():
  """Same analytic count as the PEFT peer benchmark (values it prints for these workloads)."""
  assert bench.step_flops(bench.t5.config_for("base"), 32, 612, 8) == 8_784_445_440_000
  assert bench.step_flops(bench.t5.config_for("xxl"), 32, 612, 8) == 441_071_800_680_448


@pytest.mark.parametrize("remat,attention", [("dots", "fused"), ("full", "xla")])
def test_optimized_step_matches_the_straightforward_one(remat, attention):
  """bf16 weights + remat + fused attention vs an f32 step: loss and prompt gradient agree."""
  plain_cfg = tiny.tiny_config(dtype="float32")
  fast_cfg = plain_cfg.replace(dtype="bfloat16", remat=remat, attention=attention)
  plain, fast = model_lib.build(plain_cfg, prompt_length=4), model_lib.build(fast_cfg, prompt_length=4)
  prompt, frozen = model_lib.split(tiny.random_params(plain))
  prompt = model_lib.init_prompt(plain, prompts.sampled_vocab(), jax.random.PRNGKey(0), frozen)
  batch = tiny.random_batch(batch=4, inputs_len=12, targets_len=4)
  grad = lambda m, f: jax.jit(jax.value_and_grad(
      lambda p: ts.loss_fn(p, f, batch, None, module=m)[0]))(prompt)
  loss_plain, g_plain = grad(plain, frozen)
  loss_fast, g_fast = grad(fast, model_lib.cast_frozen(frozen, jnp.bfloat16))
  np.testing.assert_allclose(loss_fast, loss_plain, rtol=2e-2)
  a, b = g_plain["prompt"]["prompt"], g_fast["prompt"]["prompt"]
  cos = jnp.sum(a * b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b))
  assert float(cos) > 0.99
  np.testing.assert_allclose(jnp.linalg.norm(b), jnp.linalg.norm(a), rtol=5e-2)


def test_rte_lengths_follow_the_quantiles():
  lengths = bench.rte_lengths(20000)
  assert 55 <= np.median(lengths) <= 70 and lengths.max() <= 290 and lengths.min() >= 20


def test_cli_prints_one_json_record_per_size(capsys):
  bench.main(["--sizes", "tiny", "--batch", "2", "--inputs-len", "16", "--prompt-len", "4",
              "--targets-len", "4", "--steps", "1", "--warmup", "0", "--mesh", "1,1"])
  rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  for key in ("system", "size", "batch", "step_s", "examples_per_s", "tflops_per_s", "peak_mem_gib", "device"):
    assert key in rec
  assert rec["system"] == "prompt_tuning" and rec["size"] == "tiny" and rec["examples_per_s"] > 0


def test_scanned_and_unrolled_timings_run_the_same_weights(capsys):
  bench.main(["--sizes", "tiny", "--batch", "2", "--inputs-len", "16", "--prompt-len", "4",
              "--targets-len", "4", "--steps", "1", "--warmup", "0", "--mesh", "1,1",
              "--scan-layers", "both", "--dtype", "float32", "--frozen-dtype", "float32"])
  scanned, unrolled = [json.loads(l) for l in capsys.readouterr().out.strip().splitlines()[-2:]]
  assert (scanned["scan_layers"], unrolled["scan_layers"]) == (True, False)
  assert scanned["loss"] == pytest.approx(unrolled["loss"], rel=1e-5)


def test_rte_batches_hold_the_same_kind_of_examples_in_each_mode():
  import argparse
  args = argparse.Namespace(batch=8, steps=3, inputs_len=512, targets_len=8, prompt_len=100)
  lengths = bench.rte_lengths(4 * 8 * 3, seed=1)
  padded = bench.rte_batches("pad_to_max", lengths, args)
  bucketed = bench.rte_batches("bucketed", lengths, args)
  packed = bench.rte_batches("packed", lengths, args)
  assert len(padded) == len(bucketed) == len(packed) == 3
  first = int(lengths[:24].sum())
  assert sum(bench.real_tokens(b, 100) for b in padded) == first
  assert sum(bench.real_tokens(b, 100) for b in bucketed) == first
  assert all(b["encoder_input_tokens"].shape[1] in (64, 128, 256, 512) for b in bucketed)
  per_step = [bench.packing.num_examples(b) for b in packed]
  assert min(per_step) > 2 * 8  # several examples per packed row, every batch full
  n = sum(per_step)
  assert sum(bench.real_tokens(b, 100) for b in packed) == int(lengths[:n].sum())


def _script_runs(name):
  """(each `run LIMIT CMD...` line of a scripts/ file as a list, its bench calls' arguments with
  $w expanded)."""
  import shlex
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  lines = open(os.path.join(root, "scripts", name)).read().splitlines()
  shared = next(l for l in lines if l.startswith('w="')).split('"')[1].split()
  runs = [shlex.split(l) for l in lines if l.startswith("run ")]
  ours = [[x for a in r[5:] for x in (shared if a == "$w" else [a])]
          for r in runs if r[2:5] == ["python", "-m", "prompt_tuning.bench"]]
  return runs, ours


def test_gpu_script_fits_one_device_call_and_passes_valid_flags():
  """scripts/bench_gpu.sh must finish inside one 600 s device command, with flags bench accepts."""
  runs, ours = _script_runs("bench_gpu.sh")
  assert sum(int(r[1]) for r in runs) <= 580
  assert len(ours) >= 5
  layouts = set()
  for expanded in ours:
    parsed = bench.flag_parser().parse_args(expanded)
    assert parsed.batch == 32 and parsed.inputs_len == 512 and parsed.prompt_len == 100
    layouts |= {"no": {False}, "yes": {True}, "both": {True, False}}[parsed.scan_layers]
  assert layouts == {True, False}  # step times of scanned and unrolled layers, in the same run


def test_compile_only_lowers_the_real_step_on_abstract_weights(capsys, monkeypatch):
  def no_weights(*args, **kwargs):
    raise AssertionError("--compile-only must not make weights")
  monkeypatch.setattr(bench, "random_frozen", no_weights)
  bench.main(["--compile-only", "--sizes", "tiny", "--scan-layers", "both", "--batch", "2",
              "--inputs-len", "16", "--prompt-len", "4", "--targets-len", "4", "--mesh", "1,1"])
  records = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
  assert [(r["size"], r["scan_layers"]) for r in records] == [("tiny", True), ("tiny", False)]
  for rec in records:
    assert rec["mode"] == "compile" and rec["compile_s"] > 0 and rec["lower_cpu_s"] > 0
    assert rec["temp_gib"] >= 0 and rec["argument_gib"] >= 0 and "error" not in rec
  with pytest.raises(SystemExit):
    bench.main(["--compile-only", "--cache-dir", "/tmp/x"])


def test_model_tuning_records_have_the_peers_fields_and_count_weight_gradients(capsys):
  bench.main(["--sizes", "tiny", "--batch", "2", "--inputs-len", "16", "--targets-len", "4", "--steps", "1",
              "--warmup", "0", "--mesh", "1,1", "--trainable", "all", "--dtype", "float32", "--frozen-dtype", "float32"])
  rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  for key in ("system", "size", "batch", "step_s", "examples_per_s", "tflops_per_s", "peak_mem_gib", "device"):
    assert key in rec
  assert rec["trainable"] == "all" and rec["prompt_len"] == 0 and np.isfinite(rec["loss"])
  cfg = bench.bench_config("tiny", "none", "float32", "xla")
  assert rec["analytic_tflops_per_step"] == round(bench.step_flops(cfg, 2, 16, 4, weight_grads=True) / 1e12, 3)


def test_model_tuning_memory_per_device_follows_the_mesh_and_partitioning(capsys):
  common = ["--memory-only", "--trainable", "all", "--sizes", "base", "--remat", "full", "--batch", "8"]
  for mesh, dims in (("1,1", "1"), ("4,2", "1"), ("4,2", "2")):
    bench.main(common + ["--mesh", mesh, "--parameter-partitioning-dims", dims])
  one, model_split, fsdp = [json.loads(l) for l in capsys.readouterr().out.strip().splitlines()]
  base = 247_577_856 * 4 / 2 ** 30  # T5 1.1 Base's float32 weights, GiB
  assert one["trainable_weights_gib_per_device"] == pytest.approx(base, abs=1e-3) == one["gradients_gib_per_device"]
  assert model_split["trainable_weights_gib_per_device"] == pytest.approx(base / 2, rel=0.01)
  assert fsdp["trainable_weights_gib_per_device"] == pytest.approx(base / 8, rel=0.01)
  assert 0 < fsdp["optimizer_state_gib_per_device"] < 0.01 * base  # factored second moments
  assert one["saved_activations_gib"] == fsdp["saved_activations_gib"] > 0  # the whole batch's


def test_model_tuning_compiles_on_abstract_weights(capsys, monkeypatch):
  def no_weights(*args, **kwargs):
    raise AssertionError("--compile-only must not make weights")
  monkeypatch.setattr(bench, "random_frozen", no_weights)
  bench.main(["--compile-only", "--trainable", "all", "--sizes", "tiny", "--batch", "2", "--inputs-len", "16",
              "--targets-len", "4", "--mesh", "1,1"])
  rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert rec["trainable"] == "all" and rec["compile_s"] > 0 and "error" not in rec


def test_model_tuning_gpu_script_fits_one_device_call_and_passes_valid_flags():
  runs, ours = _script_runs("bench_gpu_model_tuning.sh")
  assert sum(int(r[1]) for r in runs) <= 570
  peers = [r[4:] for r in runs if r[3] == "$peer"]
  assert ours and peers
  for args in ours:
    parsed = bench.flag_parser().parse_args(args)
    assert parsed.trainable == "all" and parsed.batch == 32 and parsed.prompt_len is None
  assert all("--mode" in p and p[p.index("--mode") + 1] == "full" for p in peers)
