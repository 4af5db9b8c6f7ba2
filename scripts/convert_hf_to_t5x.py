"""Converts a Hugging Face T5 1.1 model folder into a T5X checkpoint (legacy TensorStore layout).

The output restores with this project (and with T5X: `optimizer/target/...`, no optimizer
state, so use T5X's fallback_to_scratch for the optimizer). Also prints the matching T5Config.

  python scripts/convert_hf_to_t5x.py ~/models/t5-base-lm-adapt /ckpts/t5_base_lm_adapt/checkpoint_0
"""
import dataclasses
import json
import sys

import jax.numpy as jnp
from flax import traverse_util

from prompt_tuning.config import cli
from prompt_tuning.checkpoints import hf
from prompt_tuning.checkpoints import t5x


def convert(src: str, dst: str, dtype=None) -> dict:
  """Writes the checkpoint; returns the T5Config fields."""
  leaves, cfg = hf.open_hf_t5(src)
  params = {}
  for name, leaf in leaves.items():
    value = leaf.value()
    params[name] = value.astype(dtype) if dtype is not None else value
  t5x.write_t5x(dst, traverse_util.unflatten_dict(params, sep="/"))
  return dataclasses.asdict(cfg)


def main(argv=None) -> int:
  ap = cli.doc_parser(__doc__)
  ap.add_argument("hf_dir", help="folder with config.json and model.safetensors / pytorch_model.bin")
  ap.add_argument("output", help="new checkpoint folder (must not exist)")
  ap.add_argument("--dtype", default="float32", help="stored dtype (float32 like the released T5X checkpoints)")
  args = ap.parse_args(argv)
  try:
    fields = convert(args.hf_dir, args.output, jnp.dtype(args.dtype))
  except (KeyError, ValueError, FileNotFoundError, FileExistsError) as err:
    print(f"error: {err}", file=sys.stderr)
    return 2
  print(f"wrote {args.output}\nT5Config: {json.dumps(fields)}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
