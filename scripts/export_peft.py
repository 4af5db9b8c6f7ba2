"""Writes a prompt as a PyTorch PEFT prompt-tuning adapter folder.

The encoder's layer and head counts that PEFT records come from SOURCE: the run's MODEL_DIR
(or one of its checkpoint_<step> folders; its config.gin names the model), or the frozen
checkpoint (T5X, any layout, or a Hugging Face folder, which also becomes the adapter's
base_model_name_or_path). Then `PeftModel.from_pretrained(T5ForConditionalGeneration
.from_pretrained(BASE), OUT)` runs the prompt in PyTorch on the same backbone:

  python scripts/export_peft.py /tmp/rte_base/prompt_best.npy /tmp/rte_base /tmp/rte_adapter
  python scripts/export_peft.py prompt.npy ~/models/t5-base-lm-adapt adapter/
"""
import sys

from prompt_tuning.config import cli
from prompt_tuning.config.errors import UsageError
from prompt_tuning.runs import peft_export


def main(argv=None) -> int:
  ap = cli.doc_parser(__doc__)
  ap.add_argument("prompt", help="prompt .npy [length, d_model] or PEFT adapter folder")
  ap.add_argument("source", help="the run's MODEL_DIR, or the frozen checkpoint (T5X or Hugging Face)")
  ap.add_argument("output", help="new adapter folder (must not exist)")
  ap.add_argument("--base_model_name_or_path", default=None,
                  help="recorded in adapter_config.json, e.g. google/t5-base-lm-adapt")
  args = ap.parse_args(argv)
  try:
    out = peft_export.export_peft(args.prompt, args.source, args.output, args.base_model_name_or_path)
  except UsageError as err:
    print(f"export_peft: error: {str(err).splitlines()[0]}", file=sys.stderr)
    return 2
  print(f"wrote {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
