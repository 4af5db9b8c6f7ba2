"""Writes one variable of a checkpoint to a float .npy file.

Reads T5X checkpoints (msgpack, TensorStore, Orbax / OCDBT; local or gs://), this project's
training checkpoints (MODEL_DIR/checkpoint_<step>, or a MODEL_DIR for its newest checkpoint;
the prompt is `prompt/prompt`) and Hugging Face T5 1.1 folders (by T5X name). Names may be
given relative to the parameters (`token_embedder/embedding`) or in full. Examples:

  python scripts/extract_variable.py gs://t5-data/pretrained_models/t5x/t5_1_1_lm100k_base/checkpoint_1100000 \\
      token_embedder/embedding embedding.npy
  python scripts/extract_variable.py MODEL_DIR/checkpoint_3000 prompt/prompt prompt.npy
  python scripts/extract_variable.py ~/models/t5-base-lm-adapt --list
"""
import sys

import numpy as np

from prompt_tuning.config import cli
from prompt_tuning.checkpoints import reader


def main(argv=None) -> int:
  ap = cli.doc_parser(__doc__)
  ap.add_argument("checkpoint", help="checkpoint folder (or msgpack file, MODEL_DIR, Hugging Face folder), local or gs://")
  ap.add_argument("name", nargs="?", help="variable name, '/' or '.' separated; omit with --list")
  ap.add_argument("output", nargs="?", help="the .npy file to write")
  ap.add_argument("--list", action="store_true", help="print every variable with its shape and dtype")
  ap.add_argument("--dtype", default=None, help="cast before saving (default: stored dtype; bfloat16 becomes float32)")
  args = ap.parse_args(argv)
  try:
    if args.list:
      for name, leaf in reader.open_any(args.checkpoint).leaves.items():
        print(f"{name}\t{tuple(leaf.shape)}\t{leaf.dtype}")
      return 0
    if not args.name or not args.output:
      ap.error("give NAME and OUTPUT (or --list)")
    value = reader.open_any(args.checkpoint).leaf(args.name).value()
    if args.dtype or value.dtype.name == "bfloat16":
      value = value.astype(args.dtype or np.float32)
    np.save(args.output, value, allow_pickle=False)
    print(f"wrote {args.output}: {args.name} {value.shape} {value.dtype}")
    return 0
  except (KeyError, ValueError, FileNotFoundError) as err:
    print(f"error: {err}", file=sys.stderr)
    return 2


if __name__ == "__main__":
  sys.exit(main())
