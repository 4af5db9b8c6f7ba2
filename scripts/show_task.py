"""Print a few preprocessed examples of a registered seqio task or mixture.

  python scripts/show_task.py taskless_super_glue_rte_v102 --split validation -n 3
  python scripts/show_task.py quickstart_review_sentiment -n 3   # the quickstart's task
  python scripts/show_task.py --gin_file=my_task.gin -n 3        # its MIXTURE_OR_TASK_NAME
  python scripts/show_task.py --list rte           # names containing "rte"
  python scripts/show_task.py super_glue_cb_v102 --mock   # random data, offline

Shows the exact text the model is trained on, the token counts, and whether
the example would be cut at the given lengths (the prompt is added inside
the model, on top of --inputs_length). Every task `prompt_tuning.data`
registers is there, and the quickstart's; `--gin_file` / `--gin.NAME=VALUE`
(as for `prompt_tuning.train`) add the tasks a config registers, such as
`@prompt_tuning.data.local_task()`, and name the config's
MIXTURE_OR_TASK_NAME when no task is given.
"""
import argparse
import sys
from typing import Optional, Sequence

_PROG = "show_task.py"


def _parse(argv):
  parser = argparse.ArgumentParser(prog=_PROG, description=__doc__.split("\n")[0])
  parser.add_argument("task", nargs="?", help="task or mixture name")
  parser.add_argument("--split", default="validation")
  parser.add_argument("-n", "--num_examples", type=int, default=3)
  parser.add_argument("--inputs_length", type=int, default=512)
  parser.add_argument("--targets_length", type=int, default=8)
  parser.add_argument("--list", nargs="?", const="", metavar="SUBSTRING",
                      help="list the registered task and mixture names and exit")
  parser.add_argument("--mock", action="store_true",
                      help="use random TFDS-shaped data (no download)")
  parser.add_argument("--tfds_data_dir", default=None)
  parser.add_argument("--gin_file", action="append", default=[], metavar="PATH",
                      help="gin file whose tasks to register (as for prompt_tuning.train)")
  parser.add_argument("--gin_search_paths", action="append", default=[], metavar="DIRS")
  args, rest = parser.parse_known_args(argv)
  args.gin_bindings = []
  for item in rest:
    if not item.startswith("--gin."):
      parser.error(f"unrecognized argument {item!r}")
    args.gin_bindings.append(item[len("--gin."):])
  if args.list is None and not args.task and not args.gin_file:
    parser.error("give a task name, a --gin_file that binds MIXTURE_OR_TASK_NAME, or --list")
  return args


def _text(value) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def show(task_name: str, split: str, num_examples: int, lengths, out=None) -> None:
  import seqio  # pylint: disable=g-import-not-at-top
  out = out or sys.stdout
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


def _config_task(gin_files, bindings, search_paths) -> Optional[str]:
  """Parses the gin config; evaluates its MIXTURE_OR_TASK_NAME (which registers a task bound
  as `@...()`) and returns it, or None when the config leaves it unset or required."""
  import gin  # pylint: disable=g-import-not-at-top
  from prompt_tuning.config import gin_config  # pylint: disable=g-import-not-at-top
  gin_config.parse(gin_files, bindings, search_paths, queried=["MIXTURE_OR_TASK_NAME"])
  try:
    value = gin.query_parameter("%MIXTURE_OR_TASK_NAME")
  except ValueError:  # Not bound.
    return None
  if isinstance(value, gin.config.ConfigurableReference):
    value = value.scoped_configurable_fn()  # Calls `@...()`, or resolves a macro.
  return value if isinstance(value, str) else None  # None: gin.REQUIRED.


def register_tasks(args) -> Optional[str]:
  """Registers every task `show` can print; returns the gin config's task, if any."""
  import prompt_tuning.data  # noqa: F401  registers the tasks
  from prompt_tuning.data import quickstart  # pylint: disable=g-import-not-at-top
  quickstart.task()  # The quickstart's task reads files shipped with the package.
  if not args.gin_file:
    return None
  search_paths = [p for group in args.gin_search_paths for p in group.split(",")]
  return _config_task(args.gin_file, args.gin_bindings, search_paths)


def _run(args) -> None:
  import seqio  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from prompt_tuning.config.errors import UsageError  # pylint: disable=g-import-not-at-top
  config_task = register_tasks(args)
  names = set(seqio.TaskRegistry.names()) | set(seqio.MixtureRegistry.names())
  if args.list is not None:
    print("\n".join(sorted(n for n in names if args.list in n)))
    return
  task = args.task or config_task
  if not task:
    raise UsageError("the gin config does not bind MIXTURE_OR_TASK_NAME: give a task name")
  if task not in names:
    raise UsageError(f"no task or mixture {task!r}: see --list")
  if args.tfds_data_dir:
    seqio.set_tfds_data_dir_override(args.tfds_data_dir)
  lengths = {"inputs": args.inputs_length, "targets": args.targets_length}
  if args.mock:
    with tfds.testing.mock_data(num_examples=max(args.num_examples, 1)):
      show(task, args.split, args.num_examples, lengths)
    return
  try:
    show(task, args.split, args.num_examples, lengths)
  except OSError as err:  # E.g. TFDS could not download a dataset that is not prepared.
    raise UsageError(f"cannot read {task!r}: {' '.join(str(err).split())[:300]}; prepare its "
                     "TFDS dataset where there is network and pass --tfds_data_dir, or try "
                     "--mock") from None


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = _parse(argv)
  from prompt_tuning.config.errors import UsageError  # pylint: disable=g-import-not-at-top
  try:
    _run(args)
  except UsageError as err:
    print(f"{_PROG}: error: {str(err).splitlines()[0]}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  from prompt_tuning.config import cli
  sys.exit(cli.exit_code(main))
