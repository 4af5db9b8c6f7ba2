"""Writes one variable of a checkpoint to a float .npy file.

Reads T5X checkpoints (msgpack, TensorStore, Orbax; local or gs://), this project's training
checkpoints (checkpoint_N/state) and Hugging Face T5 1.1 folders (by T5X name). Examples:

  python scripts/extract_variable.py gs://t5-data/pretrained_models/t5x/t5_1_1_lm100k_base/checkpoint_1100000 \\
      token_embedder/embedding embedding.npy
  python scripts/extract_variable.py MODEL_DIR/checkpoint_3000/state train_state/prompt/prompt/prompt prompt.npy
"""
import argparse
import sys

import numpy as np

from prompt_tuning.checkpoints import hf
from prompt_tuning.checkpoints import t5x


def read(path: str, name: str) -> np.ndarray:
  if hf.is_hf_checkpoint(path):
    leaves, _ = hf.open_hf_t5(path)
    if name not in leaves:
      raise KeyError(f"{name!r} is not a T5X name of this Hugging Face model (e.g. token_embedder/embedding)")
    return leaves[name].value()
  return t5x.read_variable(path, name)


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                               epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("checkpoint", help="checkpoint folder (or msgpack file), local or gs://")
  ap.add_argument("name", nargs="?", help="variable name, '/' or '.' separated; omit with --list")
  ap.add_argument("output", nargs="?", help="the .npy file to write")
  ap.add_argument("--list", action="store_true", help="print every variable with its shape and dtype")
  ap.add_argument("--dtype", default=None, help="cast before saving (default: stored dtype; bfloat16 becomes float32)")
  args = ap.parse_args(argv)
  try:
    if args.list:
      for name, (shape, dtype) in t5x.list_variables(args.checkpoint).items():
        print(f"{name}\t{tuple(shape)}\t{dtype}")
      return 0
    if not args.name or not args.output:
      ap.error("give NAME and OUTPUT (or --list)")
    value = read(args.checkpoint, args.name)
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
