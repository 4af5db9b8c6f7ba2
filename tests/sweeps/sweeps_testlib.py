"""Shared helpers for the sweep tests: the entry point in-process, its manifest and outputs."""
import json
import os

from prompt_tuning import sweep as sweep_main
from tests.runs import runs_testlib

QUICKSTART = ["--gin_file=runs/quickstart.gin"]


def run(capsys, *argv):
  """(exit status, stdout lines, stderr lines without start-up chatter) of the entry point."""
  code = sweep_main.main(list(argv))
  captured = capsys.readouterr()
  runs_testlib.clear_gin()
  return code, captured.out.splitlines(), runs_testlib.error_lines(captured.err)


def manifest(root) -> dict:
  with open(os.path.join(root, "sweep.json")) as f:
    return json.load(f)


def write_json(path, obj) -> str:
  with open(path, "w") as f:
    json.dump(obj, f)
  return str(path)
