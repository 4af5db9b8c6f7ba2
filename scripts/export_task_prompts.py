"""Writes each task's prompt of a multi-task prompt run as its own prompt file, for single-task tools.

A multi-task run's prompt_best.npy (and prompts/prompt_<step>.npy) holds every task's effective
prompt, [tasks, length, d_model], in the order of the task indices its examples selected (the
task_index_ variants' sentinel, or the task's place in the mixture). This writes OUT/<name>.npy
for each, and with --peft SOURCE (the run's MODEL_DIR, or its frozen checkpoint) a PEFT adapter
folder OUT/<name>/ too:

  python scripts/export_task_prompts.py /tmp/mt/prompt_best.npy /tmp/mt_tasks \\
      --names sentiment,aspects --peft /tmp/mt

Each task prompt serves the plain model on the task's inputs without the task-index sentinel
(the multi-task model drops it before encoding), e.g. with runs/prompt_eval.gin and
--gin.PROMPT_FILE=/tmp/mt_tasks/sentiment.npy.
"""
import sys

from prompt_tuning.config import cli
from prompt_tuning.config.errors import UsageError
from prompt_tuning.runs import methods


def main(argv=None) -> int:
  ap = cli.doc_parser(__doc__)
  ap.add_argument("table", help="a multi-task run's prompt file [tasks, length, d_model]")
  ap.add_argument("output", help="folder for the task prompts")
  ap.add_argument("--names", default="", help="comma-separated task names, in task-index order "
                  "(default task_0, task_1, ...)")
  ap.add_argument("--peft", default=None, metavar="SOURCE",
                  help="also write PEFT adapters, sized from SOURCE (MODEL_DIR or frozen checkpoint)")
  args = ap.parse_args(argv)
  try:
    written = methods.export_task_prompts(args.table, args.output, [n for n in args.names.split(",") if n],
                                          args.peft)
  except UsageError as err:
    print(f"export_task_prompts: error: {str(err).splitlines()[0]}", file=sys.stderr)
    return 2
  for path in written:
    print(f"wrote {path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
