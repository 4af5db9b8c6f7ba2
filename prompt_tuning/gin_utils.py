"""Gin for the entry points: T5X's flags, the `configs/` search path, one-line errors.

Flags (the same as T5X's):
  --gin_file=PATH         a gin file; repeat it, later files override earlier ones.
  --gin.NAME=VALUE        one binding, applied after every file, e.g. --gin.TRAIN_STEPS=100 or
                          --gin.MODEL_DIR=/tmp/run (strings may be given without quotes).
  --gin_search_paths=A,B  folders searched for gin files and their `include`s.
  --multiprocess_gpu, --coordinator_address=HOST:PORT, --process_count=N, --process_index=I
                          join a multi-host job (see `prompt_tuning.multihost`).

Files are looked up as given (relative to the working directory), then in each search path,
then in this project's `configs/` folder and the folder above it, so `runs/quickstart.gin` and
`configs/runs/quickstart.gin` both work from anywhere. `configs/` is PROMPT_TUNING_CONFIGS if
set, else the copy a non-editable install ships as `prompt_tuning/configs/`, else the first one
found walking up from this package (editable install, source checkout) or the working directory.
"""
from __future__ import annotations

import argparse
import ast
import logging
import os
import sys
import tempfile
from typing import Callable, Optional, Sequence

import gin

CONFIGS_ENV = "PROMPT_TUNING_CONFIGS"


class UsageError(Exception):
  """A problem in the user's flags, config or files: reported as one line, without a traceback."""


def local_folder(path: str, macro: str) -> str:
  """`path`, refused in one line when it is a URL: outputs are written with local file
  operations (atomic renames), which object stores such as gs:// do not offer."""
  if "://" in str(path):
    raise UsageError(f"{macro} {path!r} is not a local folder: outputs are written with local file "
                     "operations; use a local or shared folder (e.g. the bucket mounted with gcsfuse)")
  return path


# ----------------------------------------------------------------------------- configurables


def register_configurables() -> None:
  """Makes the core library's functions available to gin under stable names (idempotent)."""
  if getattr(register_configurables, "done", False):
    return
  from prompt_tuning import decoding, model, optim, prompts, t5
  from prompt_tuning import evaluation, trainer  # noqa: F401  register train / run_eval / run_infer
  ext = gin.external_configurable
  ext(t5.T5Config, module="prompt_tuning.t5")
  ext(model.build, module="prompt_tuning.model")
  ext(optim.adafactor, module="prompt_tuning.optim")
  for name in ("random_uniform", "sampled_vocab", "class_labels", "from_string", "from_npy"):
    ext(getattr(prompts, name), module="prompt_tuning.prompts")
  for name in ("greedy", "beam_search", "sample"):
    ext(getattr(decoding, name), module="prompt_tuning.decoding")
  register_configurables.done = True


# ----------------------------------------------------------------------------- search paths


def _walk_up(start: str):
  path = os.path.abspath(start)
  while True:
    yield path
    parent = os.path.dirname(path)
    if parent == path:
      return
    path = parent


def find_configs_dir() -> Optional[str]:
  """This project's `configs/` folder (the one holding runs/prompt_finetune.gin), or None."""
  package = os.path.dirname(os.path.abspath(__file__))
  candidates = [os.environ.get(CONFIGS_ENV, ""), os.path.join(package, "configs")]  # a packaged copy
  for start in (package, os.getcwd()):
    candidates += [os.path.join(p, "configs") for p in _walk_up(start)]
  for folder in candidates:
    if folder and os.path.isfile(os.path.join(folder, "runs", "prompt_finetune.gin")):
      return folder
  return None


def search_paths(extra: Sequence[str] = ()) -> list[str]:
  paths = [os.getcwd()] + [p for p in extra if p]
  configs = find_configs_dir()
  if configs:
    paths += [configs, os.path.dirname(configs)]
  return paths


# ----------------------------------------------------------------------------- parsing


def _as_binding(text: str) -> str:
  """`NAME=VALUE` with VALUE quoted when it is a bare word or path (`MODEL_DIR=/tmp/x`)."""
  name, sep, value = text.partition("=")
  if not sep:
    raise UsageError(f"--gin.{text}: expected --gin.NAME=VALUE")
  value = value.strip()
  if value and value[0] not in "@%" and value not in ("None", "True", "False"):
    try:
      ast.literal_eval(value)
    except (ValueError, SyntaxError):
      value = repr(value)
  return f"{name.strip()} = {value}"


def _resolve_file(path: str, paths: Sequence[str]) -> str:
  for base in [""] + list(paths):
    candidate = os.path.join(base, path) if base else path
    if os.path.isfile(candidate):
      return os.path.abspath(candidate)
  configs = find_configs_dir() or "configs/"
  raise UsageError(f"gin file {path!r} not found (looked in the working directory, "
                   f"--gin_search_paths and {configs}); check the --gin_file path")


def _one_line(err: BaseException) -> str:
  text = " ".join(str(err).split())
  return text.split(" In file ")[0].split(" No values supplied by Gin")[0]


def parse(gin_files: Sequence[str], bindings: Sequence[str] = (),
          extra_search_paths: Sequence[str] = ()) -> None:
  """Parses files then bindings; raises UsageError naming the bad file/binding."""
  register_configurables()
  if not gin_files:
    raise UsageError("no --gin_file given: pass e.g. --gin_file=runs/quickstart.gin")
  paths = search_paths(extra_search_paths)
  gin.clear_config(clear_constants=True)
  for path in paths:
    gin.add_config_file_search_path(path)
  files = [_resolve_file(f, paths) for f in gin_files]
  quiet = _DropPathNotFound()  # gin logs every search-path miss of an `include` as an error
  logging.getLogger().addFilter(quiet)
  try:
    gin.parse_config_files_and_bindings(files, [_as_binding(b) for b in bindings],
                                        finalize_config=False)
  except (ValueError, IOError, KeyError, SyntaxError, TypeError) as err:
    raise UsageError(f"bad gin config: {_one_line(err)} (check the --gin_file order and "
                     "--gin.NAME spellings; models/*.gin come before prompts/*.gin and runs/*.gin)") from err
  finally:
    logging.getLogger().removeFilter(quiet)


class _DropPathNotFound(logging.Filter):
  def filter(self, record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Path not found")


def write_config(model_dir: str, name: str = "config.gin") -> str:
  """Writes the parsed gin config to MODEL_DIR/name atomically (temp file + rename)."""
  os.makedirs(model_dir, exist_ok=True)
  path = os.path.join(model_dir, name)
  fd, tmp = tempfile.mkstemp(dir=model_dir, prefix=".tmp-", suffix=".gin")
  with os.fdopen(fd, "w") as f:
    f.write(gin.config_str())
  os.replace(tmp, path)
  return path


# ----------------------------------------------------------------------------- entry points


def flag_parser(prog: str, description: str) -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
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


def main(argv: Sequence[str], prog: str, description: str, run: Callable[[], object]) -> int:
  """Flags -> gin -> `run()`; user errors become one line on stderr and exit status 2."""
  parser = flag_parser(prog, description)
  args, rest = parser.parse_known_args(argv)
  bindings = []
  for item in rest:
    if not item.startswith("--gin."):
      parser.error(f"unrecognized argument {item!r}")
    bindings.append(item[len("--gin."):])
  extra = [p for group in args.gin_search_paths for p in group.split(",")]
  try:
    _join_job(args)
    if args.tfds_data_dir:
      import seqio
      seqio.set_tfds_data_dir_override(args.tfds_data_dir)
    parse(args.gin_file, bindings, extra)
    run()
  except UsageError as err:
    print(f"{prog}: error: {str(err).splitlines()[0]}", file=sys.stderr)
    return 2
  except (ValueError, TypeError) as err:
    from prompt_tuning.model import ConfigError
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
