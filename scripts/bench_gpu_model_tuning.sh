#!/usr/bin/env bash
# Model tuning (every weight trained: the step of runs/model_finetune.gin, float32 weights and
# factored Adafactor) against Hugging Face full fine-tuning (the peer's --mode full), on the same
# card in one run, so results are ratios. A second device call next to scripts/bench_gpu.sh,
# whose 570 s are taken by prompt tuning.
# Usage: scripts/bench_gpu_model_tuning.sh PEER_SCRIPT OUT_JSONL
source "$(dirname "$0")/bench_gpu_common.sh"
w="--batch 32 --inputs-len 512 --targets-len 8"
run 150 python -m prompt_tuning.bench --sizes base,small,large $w --trainable all
run 120 python "$peer" --sizes small,base,large --mode full $w
# XL at batch 32 x 512 (scanned layers compile faster), in processes of their own.
run 110 python -m prompt_tuning.bench --sizes xl $w --trainable all --steps 5 --warmup 1 --scan-layers yes
run 90 python "$peer" --sizes xl --mode full $w --steps 5 --warmup 1
