"""Exports a tuned model (model or partial tuning) as a checkpoint of its own.

The backbone of a training run's checkpoint: the weights it trained in place of those of the
frozen checkpoint it started from (`prompt_tuning.checkpoints.export`). A T5X checkpoint is what
INITIAL_CHECKPOINT_PATH takes, so prompt tuning (or another tuning run) can start from a
model-tuned backbone, and what eval / infer evaluate with PROMPT_FILE = None; a Hugging Face folder
loads in transformers. The checkpoint exported is the run's best evaluation unless --step says.

  python scripts/export_checkpoint.py /tmp/rte_base_model_tuning /models/rte_base_tuned
  python scripts/export_checkpoint.py /tmp/rte_base_model_tuning /models/rte_base_tuned_hf --format hf
"""
import sys

from prompt_tuning.config import cli
from prompt_tuning.checkpoints import export


def main(argv=None) -> int:
  ap = cli.doc_parser(__doc__)
  ap.add_argument("model_dir", help="a training run's MODEL_DIR")
  ap.add_argument("output", help="new folder (must not exist)")
  ap.add_argument("--format", default="t5x", choices=export.FORMATS,
                  help="t5x: a T5X checkpoint (TensorStore layout); hf: a Hugging Face T5 folder")
  ap.add_argument("--step", type=int, default=None, help="the checkpoint to export (default: the best)")
  ap.add_argument("--dtype", default=None, help="hf only: stored dtype of the weights, e.g. bfloat16")
  ap.add_argument("--relative_attention_max_distance", type=int, default=128,
                  help="hf only: written to config.json (128 in every T5 1.1)")
  args = ap.parse_args(argv)
  try:
    step = export.export(args.model_dir, args.output, args.format, args.step, args.dtype,
                         args.relative_attention_max_distance)
  except (KeyError, ValueError, TypeError, FileNotFoundError, FileExistsError, OSError) as err:
    print(f"export_checkpoint: error: {' '.join(str(err).split())}", file=sys.stderr)
    return 2
  print(f"wrote {args.output}: checkpoint_{step} of {args.model_dir} as a {args.format} checkpoint")
  return 0


if __name__ == "__main__":
  sys.exit(main())
