"""The command line every entry point shares: T5X's flags, then gin, then one call.

Flags (the same as T5X's):
  --gin_file=PATH         a gin file; repeat it, later files override earlier ones.
  --gin.NAME=VALUE        one binding, applied after every file, e.g. --gin.TRAIN_STEPS=100 or
                          --gin.MODEL_DIR=/tmp/run (strings may be given without quotes).
                          A binding without effect (a macro nothing uses, an unknown
                          configurable or parameter) is refused, naming the closest names.
  --gin_search_paths=A,B  folders searched for gin files and their `include`s.
  --tfds_data_dir=DIR     the TFDS data folder the seqio tasks read.
  --multiprocess_gpu, --coordinator_address=HOST:PORT, --process_count=N, --process_index=I
                          join a multi-host job (see `prompt_tuning.parallel.multihost`).

User errors (UsageError, ConfigError, gin's missing required bindings) become one line on
stderr, `<prog>: error: ...`, and exit status 2.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Optional, Sequence

from prompt_tuning.config import gin_config
from prompt_tuning.config.errors import ConfigError
from prompt_tuning.config.errors import UsageError


class _OneLineParser(argparse.ArgumentParser):
  """argparse whose errors (an unknown flag, a value of the wrong type) are UsageErrors, i.e. one
  line, instead of the usage text and exit."""

  def error(self, message):
    raise UsageError(f"{message}; see --help for the flags")


def doc_parser(doc: str, **kwargs) -> argparse.ArgumentParser:
  """The parser of a script whose module docstring is its help: the first paragraph as the
  description, the rest (usage examples, notes) shown as written after the flags."""
  summary, details = doc.split("\n\n", 1)
  return argparse.ArgumentParser(description=summary, epilog=details,
                                 formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs)


def flag_parser(prog: str, description: str,
                parser_class: type = argparse.ArgumentParser) -> argparse.ArgumentParser:
  parser = parser_class(
      prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog="Any --gin.NAME=VALUE flag adds a gin binding after all files, e.g.\n"
             "  --gin.MODEL_DIR=/tmp/run --gin.TRAIN_STEPS=1000 --gin.BATCH_SIZE=32\n"
             "See the README for the config tree and the required macros.")
  parser.add_argument("--gin_file", action="append", default=[], metavar="PATH",
                      help="gin file to parse; repeatable, order matters (later files win). Looked up "
                           "in the working directory, --gin_search_paths and the project's configs/.")
  parser.add_argument("--gin_search_paths", action="append", default=[], metavar="DIRS",
                      help="comma-separated folders searched for gin files and includes")
  parser.add_argument("--tfds_data_dir", default=None,
                      help="TFDS data directory (local or gs://) for the seqio tasks")
  hosts = parser.add_argument_group("multi-host jobs (one process per host, all with the same flags)")
  hosts.add_argument("--multiprocess_gpu", action="store_true",
                     help="join a multi-host job; without the three flags below JAX detects the "
                          "job (TPU pod slice, SLURM, Open MPI)")
  hosts.add_argument("--coordinator_address", default=None, metavar="HOST:PORT",
                     help="address of process 0 (implies --multiprocess_gpu)")
  hosts.add_argument("--process_count", type=int, default=None, help="number of processes")
  hosts.add_argument("--process_index", type=int, default=None, help="this process's index")
  return parser


def _join_job(args: argparse.Namespace) -> None:
  """`jax.distributed.initialize` when the flags ask for a multi-host job."""
  explicit = (args.coordinator_address, args.process_count, args.process_index)
  if not args.multiprocess_gpu and all(x is None for x in explicit):
    return
  if any(x is None for x in explicit) and any(x is not None for x in explicit):
    raise UsageError("--coordinator_address, --process_count and --process_index go together: "
                     "give all three, or none to let JAX detect the job")
  if args.process_count is not None and not 0 <= args.process_index < args.process_count:
    raise UsageError(f"--process_index {args.process_index} is not in [0, --process_count "
                     f"{args.process_count})")
  import jax
  jax.distributed.initialize(coordinator_address=args.coordinator_address,
                             num_processes=args.process_count, process_id=args.process_index)


def main(argv: Optional[Sequence[str]], prog: str, description: str,
         run: Callable[[argparse.Namespace], object]) -> int:
  """Flags -> gin -> `run(flags)`; user errors become one line on stderr and exit status 2."""
  parser = flag_parser(prog, description, _OneLineParser)
  try:
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    bindings = []
    for item in rest:
      if not item.startswith("--gin."):
        parser.error(f"unrecognized argument {item!r}")
      bindings.append(item[len("--gin."):])
    extra = [p for group in args.gin_search_paths for p in group.split(",")]
    _join_job(args)
    gin_config.parse(args.gin_file, bindings, extra)
    run(args)
  except UsageError as err:
    print(f"{prog}: error: {str(err).splitlines()[0]}", file=sys.stderr)
    return 2
  except (ValueError, TypeError) as err:
    missing = str(err).splitlines()[0] if isinstance(err, ConfigError) else _missing_required(err)
    if missing is None:
      raise
    print(f"{prog}: error: {missing}", file=sys.stderr)
    return 2
  return 0


def _missing_required(err: BaseException) -> Optional[str]:
  """A one-line message for gin's "required binding not given" errors, else None."""
  text = str(err)
  if "Required bindings" not in text and "No values supplied by Gin" not in text:
    return None
  names = text.split("[", 1)[1].split("]", 1)[0] if "[" in text else ""
  return (f"required setting not given: {names or text.splitlines()[0]}; bind its macro "
          "(e.g. --gin.MODEL_DIR=/tmp/run, --gin.MIXTURE_OR_TASK_NAME=..., --gin.CLASS_LABELS=[...]) "
          "— see the README")


def exit_code(main: Callable[[], int]) -> int:
  """`main()`'s exit status, ending quietly (status 1, no traceback) when whoever reads stdout
  stops early, as `... --list | head` does."""
  try:
    code = main()
    sys.stdout.flush()
    return code
  except BrokenPipeError:
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the final flush must not fail
    return 1
