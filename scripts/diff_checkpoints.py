"""Compares two checkpoints variable by variable: names, shapes, dtypes and values.

Each may be a T5X checkpoint of any layout (local or gs://), this project's training checkpoint
(MODEL_DIR/checkpoint_<step>, or a MODEL_DIR for its newest one) or a Hugging Face T5 1.1 folder
(under T5X names, so with --params_only it compares with the T5X checkpoint it came from).
Exit status: 0 identical (within --atol), 1 different, 2 error. Example:

  python scripts/diff_checkpoints.py run_a/checkpoint_1000 run_b/checkpoint_1000
  python scripts/diff_checkpoints.py --params_only ckpt_a ckpt_b
  python scripts/diff_checkpoints.py --params_only t5x/checkpoint_1100000 ~/models/t5-base-lm-adapt
"""
import sys

import numpy as np

from prompt_tuning.config import cli
from prompt_tuning.checkpoints import reader


def diff(a: str, b: str, atol: float = 0.0, params_only: bool = False) -> list[str]:
  """Human-readable differences between two checkpoints (empty when they agree)."""
  ca, cb = reader.open_any(a), reader.open_any(b)
  la, lb = (ca.params(), cb.params()) if params_only else (ca.leaves, cb.leaves)
  lines = [f"only in A: {n}" for n in sorted(set(la) - set(lb))]
  lines += [f"only in B: {n}" for n in sorted(set(lb) - set(la))]
  for name in sorted(set(la) & set(lb)):
    x, y = la[name], lb[name]
    if tuple(x.shape) != tuple(y.shape) or x.dtype != y.dtype:
      lines.append(f"{name}: A {tuple(x.shape)} {x.dtype} vs B {tuple(y.shape)} {y.dtype}")
      continue
    vx, vy = x.value(), y.value()
    if vx.dtype.kind in "fc" or vx.dtype.name == "bfloat16":
      delta = float(np.max(np.abs(vx.astype(np.float64) - vy.astype(np.float64)), initial=0.0))
      if delta > atol or np.isnan(delta):
        lines.append(f"{name}: max |A - B| = {delta:.3g}")
    elif not np.array_equal(vx, vy):
      lines.append(f"{name}: values differ")
  return lines


def main(argv=None) -> int:
  ap = cli.doc_parser(__doc__)
  ap.add_argument("a")
  ap.add_argument("b")
  ap.add_argument("--atol", type=float, default=0.0, help="largest absolute difference still counted as equal")
  ap.add_argument("--params_only", action="store_true", help="compare model parameters (target/...) only")
  args = ap.parse_args(argv)
  try:
    lines = diff(args.a, args.b, args.atol, args.params_only)
  except (KeyError, ValueError, FileNotFoundError) as err:
    print(f"error: {err}", file=sys.stderr)
    return 2
  print("\n".join(lines) if lines else "identical")
  return 1 if lines else 0


if __name__ == "__main__":
  sys.exit(main())
