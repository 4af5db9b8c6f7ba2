"""Ranks candidate source prompts for a target task by prompt similarity (SPoT's task transfer).

The target prompt is one tuned on the target task (briefly is enough, as in SPoT); each source is
NAME=PROMPT (a .npy or PEFT folder) or a PROMPT whose file name names it:

  python scripts/rank_source_prompts.py /tmp/target_short/prompt_best.npy \\
      mnli=/runs/mnli/prompt_best.npy qqp=/runs/qqp/prompt_best.npy squad=/runs/squad/prompt_best.npy
  python scripts/rank_source_prompts.py TARGET.npy SOURCES... --by per_token_average --json

Prints the sources most similar first (columns: SPoT's cosine of average tokens and per-token
average cosine, and the per-token best-match cosine); --json prints the same as one JSON object.
Then start the target run from the best source: --gin_file=prompts/from_file.gin
--gin.PROMPT_FILE=<that source's prompt>.
"""
import json
import os
import sys

from prompt_tuning.config import cli
from prompt_tuning.analysis import prompt_similarity
from prompt_tuning.checkpoints import prompt_io


def _named(spec: str) -> tuple[str, str]:
  if "=" in spec:
    name, path = spec.split("=", 1)
    return name, path
  return os.path.splitext(os.path.basename(os.path.normpath(spec)))[0], spec


def main(argv=None) -> int:
  ap = cli.doc_parser(__doc__)
  ap.add_argument("target", help="a prompt tuned on the target task (.npy or PEFT folder)")
  ap.add_argument("sources", nargs="+", help="candidate source prompts: NAME=PATH or PATH")
  ap.add_argument("--by", default="average_tokens", choices=prompt_similarity.MEASURES,
                  help="the measure that orders the sources (default: SPoT's average tokens)")
  ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
  args = ap.parse_args(argv)
  try:
    named = [_named(s) for s in args.sources]
    names = [n for n, _ in named]
    if len(set(names)) != len(names):
      raise ValueError(f"two sources share a name ({', '.join(sorted(n for n in set(names) if names.count(n) > 1))}): "
                       "name them with NAME=PATH")
    sources = {name: prompt_io.load_prompt(path) for name, path in named}
    rows = prompt_similarity.rank(prompt_io.load_prompt(args.target), sources, args.by)
  except (ValueError, OSError) as err:
    print(f"rank_source_prompts: error: {' '.join(str(err).split())}", file=sys.stderr)
    return 2
  if args.json:
    print(json.dumps({"target": args.target, "by": args.by, "ranking": rows}))
  else:
    print(prompt_similarity.table(rows))
  return 0


if __name__ == "__main__":
  sys.exit(main())
