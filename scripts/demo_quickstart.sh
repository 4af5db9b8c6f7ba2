#!/usr/bin/env bash
# The demonstration: prompt tuning of the quickstart model on the quickstart task, prompt length
# {1, 5, 20, 100} x initialization {random uniform, sampled vocab, class label} x seeds {0, 1},
# with model tuning of the same model as a reference line (configs/sweeps/demo_quickstart.json),
# then the summary, the Figure 3 shape (accuracy vs prompt length, a line per initialization)
# and the training curves, all under ROOT (ROOT/plots/, ROOT/summary.txt):
#
#   scripts/demo_quickstart.sh /tmp/prompt_tuning_demo
#   scripts/demo_quickstart.sh /tmp/prompt_tuning_demo --sweep method=prompt   # prompt tuning only
#
# Flags after ROOT go to the sweep. Running it again resumes the sweep and redraws the plots.
set -euo pipefail
root=${1:-/tmp/prompt_tuning_demo}
shift || true
python -m prompt_tuning.sweep --sweep_file=demo_quickstart --root="$root" "$@"
python -m prompt_tuning.sweep summarize "$root" > "$root/summary.txt"
python -m prompt_tuning.sweep plot figure3 "$root" --setting PROMPT_LENGTH
python -m prompt_tuning.sweep plot curves "$root"
cat "$root/summary.txt"
