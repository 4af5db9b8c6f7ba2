"""Converts a T5 1.1 checkpoint into a Hugging Face folder that transformers loads as is.

The source is a T5X checkpoint in any layout (msgpack, TensorStore, Orbax / OCDBT; local or
gs://), e.g. one `convert_hf_to_t5x.py` wrote, or a Hugging Face folder (rewritten, e.g. in
another dtype). The architecture comes from the parameter shapes; the output layer stays
untied from the embedding, as T5 1.1 has it (`prompt_tuning.checkpoints.hf.write_hf_t5`).

  python scripts/convert_t5x_to_hf.py \\
      gs://t5-data/pretrained_models/t5x/t5_1_1_lm100k_base/checkpoint_1100000 /models/t5_base_lm100k
  python -c "from transformers import T5ForConditionalGeneration as T; T.from_pretrained('/models/t5_base_lm100k')"
"""
import json
import sys

from prompt_tuning.config import cli
from prompt_tuning.checkpoints import hf
from prompt_tuning.checkpoints import restore
from prompt_tuning.checkpoints import shapes


def convert(src: str, dst: str, dtype=None, relative_attention_max_distance=None) -> dict:
  """Writes the folder; returns its config.json."""
  overrides = {}
  if relative_attention_max_distance is not None:
    overrides["relative_attention_max_distance"] = relative_attention_max_distance
  cfg = shapes.backbone_config(src, **overrides)
  hf.write_hf_t5(dst, restore.open_backbone(src), cfg, dtype=dtype)
  return hf.read_hf_config(dst)


def main(argv=None) -> int:
  ap = cli.doc_parser(__doc__)
  ap.add_argument("checkpoint", help="T5X checkpoint folder (checkpoint_<step>) or Hugging Face T5 1.1 folder")
  ap.add_argument("output", help="new folder (must not exist)")
  ap.add_argument("--dtype", default=None, help="stored dtype of the weights, e.g. float32 or bfloat16 "
                                                "(default: the checkpoint's)")
  ap.add_argument("--relative_attention_max_distance", type=int, default=None,
                  help="not stored in T5X checkpoints; 128 (the default) in every T5 1.1")
  args = ap.parse_args(argv)
  try:
    config = convert(args.checkpoint, args.output, args.dtype, args.relative_attention_max_distance)
  except (KeyError, ValueError, TypeError, FileNotFoundError, FileExistsError) as err:
    print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
    return 2
  print(f"wrote {args.output}: {json.dumps({k: config[k] for k in ('d_model', 'num_layers', 'num_heads', 'torch_dtype')})}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
