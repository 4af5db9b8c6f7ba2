#!/usr/bin/env bash
# Our benchmark and the PEFT peer on the same card, in one run, so results are ratios.
# Usage: scripts/bench_gpu.sh PEER_SCRIPT OUT_JSONL
# Each group has its own time limit so that one slow compile cannot take the others down.
set -u
peer=$1
out=$2
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_MEM_FRACTION=0.95
w="--batch 32 --inputs-len 512 --targets-len 8 --prompt-len 100"
run() {
  local limit=$1; shift
  echo "# $(date -u +%H:%M:%S) $*" >&2
  timeout "$limit" "$@" | tee -a "$out"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$out"
run 140 python -m prompt_tuning.bench --sizes base,small,large $w --matmul-peak --profile
run 95 python "$peer" --sizes small,base,large,xl $w
# XL and XXL in separate processes: a slow compile of one cannot take the other down. XL runs
# scanned layers first, then unrolled (step and compile time of both); XXL scanned only.
run 80 python -m prompt_tuning.bench --sizes xl $w --steps 5 --warmup 1 --scan-layers both
run 85 python -m prompt_tuning.bench --sizes xxl $w --steps 5 --warmup 1 --scan-layers yes
# Scanned base (its padded step against the unrolled base above), and RTE-like lengths padded vs
# bucketed vs packed, whose five bucket shapes compile faster scanned.
run 65 python -m prompt_tuning.bench --sizes base $w --length-dist rte --scan-layers yes
run 40 python -m prompt_tuning.bench --sizes base $w --attention cudnn
run 65 python "$peer" --sizes base $w --compile
