#!/usr/bin/env bash
# Our benchmark and the PEFT peer on the same card, in one run, so results are ratios.
# Usage: scripts/bench_gpu.sh PEER_SCRIPT OUT_JSONL
source "$(dirname "$0")/bench_gpu_common.sh"
w="--batch 32 --inputs-len 512 --targets-len 8 --prompt-len 100"
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
