# Sourced by scripts/bench_gpu*.sh: their arguments (PEER_SCRIPT OUT_JSONL), the environment,
# `run LIMIT CMD...` (CMD under its own time limit, its output appended to OUT_JSONL, so that one
# slow compile cannot take the other groups down) and the card's line at the top of OUT_JSONL.
set -u
peer=$1
out=$2
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_MEM_FRACTION=0.95
run() {
  local limit=$1; shift
  echo "# $(date -u +%H:%M:%S) $*" >&2
  timeout "$limit" "$@" | tee -a "$out"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$out"
