"""scripts/show_task.py runs offline on mock data and lists task names."""
import importlib.util
import io
import pathlib

import pytest
import tensorflow_datasets as tfds

_SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "show_task.py"


@pytest.fixture(name="show_task", scope="module")
def show_task_fixture():
  spec = importlib.util.spec_from_file_location("show_task", _SCRIPT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_lists_names(show_task, capsys):
  assert show_task.main(["--list", "_rte_v102"]) == 0
  names = capsys.readouterr().out.split()
  assert "taskless_super_glue_rte_v102" in names and "super_glue_rte_v102" in names


def test_shows_examples(show_task):
  out = io.StringIO()
  with tfds.testing.mock_data(num_examples=2):
    show_task.show("taskless_super_glue_rte_v102", "validation", 2,
                   {"inputs": 8, "targets": 8}, out=out)
  text = out.getvalue()
  assert text.count("--- taskless_super_glue_rte_v102 [validation]") == 2
  assert "inputs: 'hypothesis: " in text and "(would be cut to 8)" in text


def test_unknown_task_is_a_one_line_error(show_task, capsys):
  assert show_task.main(["no_such_task"]) == 2
  assert "no task or mixture 'no_such_task'" in capsys.readouterr().err
