"""Sweeps of the training and evaluation entry points: the paper's figures in one command.

  python -m prompt_tuning.sweep --sweep_file=figure3a --root=/runs/fig3a --dry_run
  python -m prompt_tuning.sweep --gin_file=runs/quickstart.gin --sweep PROMPT_LENGTH=1,5,20,100 \\
    --sweep SEED=0,1 --root=/tmp/lengths                      # runs here, one after another
  python -m prompt_tuning.sweep --sweep_file=figure1 --root=/shared/fig1 --launcher=slurm \\
    --gpus_per_node=8 --time=24:00:00                         # writes /shared/fig1/sweep.sbatch
  python -m prompt_tuning.sweep summarize /runs/fig3a         # mean ± std over seeds per setting
  python -m prompt_tuning.sweep plot figure3 /runs/fig3a --setting PROMPT_LENGTH

Takes train's flags (--gin_file, --gin.NAME=VALUE, --gin_search_paths, --tfds_data_dir,
--multiprocess_gpu), which apply to every run, plus the sweep's: --sweep NAME=V1,V2 (repeatable;
the runs are the product of the axes), --sweep_file, --var, --root, --launcher, --dry_run,
--resume. The README's "Reproducing the figures" section describes the sweep files.
"""
import sys

PROG = "prompt_tuning.sweep"


def main(argv=None) -> int:
  from prompt_tuning.sweeps import launch, plan
  from prompt_tuning.sweeps.spec import SweepError
  argv = sys.argv[1:] if argv is None else list(argv)
  try:
    if argv[:1] == ["summarize"]:
      from prompt_tuning.analysis import summaries
      return summaries.main(argv[1:], prog=f"{PROG} summarize")
    if argv[:1] == ["plot"]:
      from prompt_tuning.analysis import plots
      return plots.main(argv[1:], prog=f"{PROG} plot")
    parser = plan.flag_parser(PROG, __doc__)
    launch.add_flags(parser)
    args, bindings = plan.parse_flags(parser, argv)
    return launch.run(plan.make(args, bindings), args)
  except SweepError as err:
    print(f"{PROG}: error: {' '.join(str(err).split())}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  from prompt_tuning.config import cli
  sys.exit(cli.exit_code(main))
