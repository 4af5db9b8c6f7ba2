"""Evaluate a prompt file + frozen checkpoint on a task (configs/runs/prompt_eval.gin).

  python -m prompt_tuning.eval --gin_file=configs/runs/quickstart_eval.gin
  python -m prompt_tuning.eval --gin_file=models/t5_1_1_base_prompt.gin \\
    --gin_file=runs/prompt_eval.gin --gin.MIXTURE_OR_TASK_NAME=... --gin.PROMPT_FILE=... \\
    --gin.INITIAL_CHECKPOINT_PATH=... --gin.EVAL_OUTPUT_DIR=...

Calls `prompt_tuning.runs.eval_infer.run_eval` with the bindings of the gin files.
"""
import sys


def main(argv=None) -> int:
  from prompt_tuning.config import cli
  from prompt_tuning.runs import eval_infer
  from prompt_tuning.runs import launch
  return cli.main(argv, "prompt_tuning.eval", __doc__, launch.with_flags(eval_infer.run_eval))


if __name__ == "__main__":
  sys.exit(main())
