"""Summarizes training runs as the paper reports them: mean ± std over seeds, per setting.

Each run's best evaluation (the early-stopping choice: highest eval/score) is read from its
metrics.jsonl. MODEL_DIRs are grouped by the setting their config.gin gives (model size, method,
prompt length, prompt init, frozen checkpoint), a sweep root's runs by the sweep's axes; runs
that differ only in SEED (and task) form one group. For each group it prints every task metric's
mean ± standard deviation over seeds with n and the steps of the best evaluations and, where
every seed has all 8 SuperGLUE tasks, the SuperGLUE score (Figure 1's y axis):

  python scripts/summarize_runs.py /runs/*/           # e.g. /runs/{rte,cb,...}_{base,xxl}_s{0,1,2}
  python scripts/summarize_runs.py /runs/fig1 --by size,method
  python scripts/summarize_runs.py /runs/*/ --json > summary.json

The same as `python -m prompt_tuning.sweep summarize` (prompt_tuning/analysis/summaries.py).
"""
import sys

from prompt_tuning.analysis import summaries
from prompt_tuning.sweeps.spec import SweepError


def main(argv=None) -> int:
  try:
    return summaries.main(sys.argv[1:] if argv is None else argv, prog="summarize_runs")
  except SweepError as err:
    print(f"summarize_runs: error: {' '.join(str(err).split())}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  from prompt_tuning.config import cli
  sys.exit(cli.exit_code(main))
