"""Write predictions (INFER_MODE='predict') or target log-likelihoods ('score') as JSONL (configs/runs/prompt_infer.gin).

  python -m prompt_tuning.infer --gin_file=configs/runs/quickstart_infer.gin
  python -m prompt_tuning.infer --gin_file=models/t5_1_1_base_prompt.gin \\
    --gin_file=runs/prompt_infer.gin --gin.MIXTURE_OR_TASK_NAME=... --gin.PROMPT_FILE=... \\
    --gin.INITIAL_CHECKPOINT_PATH=... --gin.INFER_OUTPUT_DIR=...

Calls `prompt_tuning.evaluation.run_infer` with the bindings of the gin files.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(argv=None) -> int:
  from prompt_tuning import evaluation, gin_utils
  return gin_utils.main(sys.argv[1:] if argv is None else argv, "prompt_tuning.infer",
                        __doc__, lambda: evaluation.run_infer())


if __name__ == "__main__":
  sys.exit(main())
