"""Print a few preprocessed examples of a registered seqio task or mixture.

  python scripts/show_task.py taskless_super_glue_rte_v102 --split validation -n 3
  python scripts/show_task.py --list rte           # names containing "rte"
  python scripts/show_task.py super_glue_cb_v102 --mock   # random data, offline

Shows the exact text the model is trained on, the token counts, and whether
the example would be cut at the given lengths (the prompt is added inside
the model, on top of --inputs_length).
"""
import argparse
import sys
from typing import Optional, Sequence


def _parse(argv):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("task", nargs="?", help="task or mixture name")
  parser.add_argument("--split", default="validation")
  parser.add_argument("-n", "--num_examples", type=int, default=3)
  parser.add_argument("--inputs_length", type=int, default=512)
  parser.add_argument("--targets_length", type=int, default=8)
  parser.add_argument("--list", nargs="?", const="", metavar="SUBSTRING",
                      help="list the names prompt_tuning.data registers and exit")
  parser.add_argument("--mock", action="store_true",
                      help="use random TFDS-shaped data (no download)")
  parser.add_argument("--tfds_data_dir", default=None)
  args = parser.parse_args(argv)
  if args.list is None and not args.task:
    parser.error("give a task name, or --list")
  return args


def _text(value) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def show(task_name: str, split: str, num_examples: int, lengths, out=sys.stdout) -> None:
  import seqio  # pylint: disable=g-import-not-at-top
  provider = seqio.get_mixture_or_task(task_name)
  # No lengths here, so nothing is trimmed and the counts are the full ones.
  dataset = provider.get_dataset(None, split=split, shuffle=False, try_in_mem_cache=False)
  for i, example in enumerate(dataset.take(num_examples).as_numpy_iterator()):
    print(f"--- {task_name} [{split}] example {i}", file=out)
    for key in ("inputs", "targets"):
      if f"{key}_pretokenized" in example:
        print(f"{key}: {_text(example[f'{key}_pretokenized'])!r}", file=out)
      if key in example:
        count = len(example[key])
        cut = f"  (would be cut to {lengths[key]})" if count > lengths[key] else ""
        print(f"{key} tokens: {count}{cut}", file=out)
    extras = {k: v for k, v in example.items()
              if k not in ("inputs", "targets", "inputs_pretokenized", "targets_pretokenized")}
    if extras:
      print("other fields:", {k: _text(v) if isinstance(v, bytes) else v
                              for k, v in extras.items()}, file=out)


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = _parse(argv)
  import prompt_tuning.data  # pylint: disable=g-import-not-at-top  (registers tasks)
  if args.list is not None:
    for name in sorted(prompt_tuning.data.TASK_NAMES):
      if args.list in name:
        print(name)
    return 0
  if args.tfds_data_dir:
    import seqio  # pylint: disable=g-import-not-at-top
    seqio.set_tfds_data_dir_override(args.tfds_data_dir)
  lengths = {"inputs": args.inputs_length, "targets": args.targets_length}
  import contextlib  # pylint: disable=g-import-not-at-top
  import seqio  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  if args.task not in set(seqio.TaskRegistry.names()) | set(seqio.MixtureRegistry.names()):
    print(f"error: no task or mixture {args.task!r}; see --list", file=sys.stderr)
    return 2
  mock = tfds.testing.mock_data(num_examples=max(args.num_examples, 1))
  with mock if args.mock else contextlib.nullcontext():
    show(args.task, args.split, args.num_examples, lengths)
  return 0


if __name__ == "__main__":
  sys.exit(main())
