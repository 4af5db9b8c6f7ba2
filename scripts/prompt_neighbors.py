"""Prints the nearest vocabulary tokens of each position of a learned prompt (the paper's §7).

Cosine similarity between each prompt vector and every row of the frozen model's input
embedding, read from the checkpoint the prompt was tuned on (T5X or Hugging Face T5 folder):

  python scripts/prompt_neighbors.py /tmp/rte_base/prompt_best.npy \\
      gs://t5-data/pretrained_models/t5x/t5_1_1_lm100k_base/checkpoint_1100000 \\
      --labels entailment,not_entailment
  python scripts/prompt_neighbors.py PROMPT.npy CHECKPOINT --top_k 10 --json > neighbors.json

With --labels it also lists, per label, the positions that have one of its tokens among their
neighbours (the paper: a class-label initialization usually stays there after training). With
--text (a wayward prompt's WAYWARD_TEXT) it counts the positions whose nearest piece is still the
text's token there, or among the top k, gives the wayward distance and the prompt's projection
(each position's nearest piece).
"""
import json
import sys

from prompt_tuning.config import cli
from prompt_tuning.analysis import neighbors
from prompt_tuning.checkpoints import prompt_io


def main(argv=None) -> int:
  ap = cli.doc_parser(__doc__)
  ap.add_argument("prompt", help="prompt .npy [length, d_model] or PEFT adapter folder")
  ap.add_argument("checkpoint", help="the frozen model's checkpoint (T5X folder or HF T5 folder)")
  ap.add_argument("--top_k", type=int, default=5, help="neighbours per position (default 5)")
  ap.add_argument("--labels", default="", help="comma-separated label strings to look for")
  ap.add_argument("--vocab", default=None, help="SentencePiece model (default: the T5 vocabulary)")
  ap.add_argument("--text", default=None, help="the text the prompt was pulled towards (one token per position)")
  ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
  args = ap.parse_args(argv)
  labels = [l for l in args.labels.split(",") if l]
  try:
    if args.top_k < 1:
      raise ValueError(f"--top_k must be at least 1, not {args.top_k}")
    prompt = prompt_io.load_prompt(args.prompt)
    result = neighbors.report(prompt, neighbors.input_embedding(args.checkpoint), args.top_k,
                              args.vocab, labels, args.text)
  except (ValueError, OSError) as err:
    print(f"prompt_neighbors: error: {' '.join(str(err).split())}", file=sys.stderr)
    return 2
  if args.json:
    print(json.dumps(result))
    return 0
  for row in result["positions"]:
    print(f"{row['position']:4d}  " + "  ".join(f"{piece} ({sim:.2f})" for piece, sim in row["neighbors"]))
  for label, positions in result["labels"].items():
    print(f"label {label!r}: among the neighbours of positions {positions or 'none'}")
  if "text" in result:
    t = result["text"]
    print(f"text: {t['nearest']} of {t['tokens']} positions have its token as nearest piece, "
          f"{t['top_k']} among the top {args.top_k}; distance {t['distance']:.4f}")
    print(f"projection: {t['projection']}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
