"""Prompt-tune a frozen T5 1.1 model, configured with gin as in T5X.

  python -m prompt_tuning.train --gin_file=configs/runs/quickstart.gin
  python -m prompt_tuning.train \\
    --gin_file=models/t5_1_1_base_prompt.gin --gin_file=prompts/from_class_labels.gin \\
    --gin_file=runs/prompt_finetune.gin \\
    --gin.MIXTURE_OR_TASK_NAME=taskless_super_glue_rte_v102 \\
    --gin.CLASS_LABELS='["entailment", "not_entailment"]' \\
    --gin.INITIAL_CHECKPOINT_PATH=gs://t5-data/pretrained_models/t5x/t5_1_1_lm100k_base/checkpoint_1100000 \\
    --gin.MODEL_DIR=/tmp/rte

Calls `prompt_tuning.runs.train_loop.train` with the bindings of the gin files; the README lists
the required macros (MIXTURE_OR_TASK_NAME, MODEL_DIR, INITIAL_CHECKPOINT_PATH, ...).
"""
import sys


def main(argv=None) -> int:
  from prompt_tuning.config import cli
  from prompt_tuning.runs import launch
  from prompt_tuning.runs import train_loop
  return cli.main(argv, "prompt_tuning.train", __doc__, launch.with_flags(train_loop.train))


if __name__ == "__main__":
  sys.exit(main())
