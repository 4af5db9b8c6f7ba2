"""scripts/show_task.py: every registered task, the quickstart's and gin-registered ones too."""
import importlib.util
import io
import os
import pathlib
import subprocess
import sys

import gin
import pytest
import tensorflow_datasets as tfds

from prompt_tuning.data.quickstart import ASSETS

_REPO = pathlib.Path(__file__).resolve().parents[2]
_SCRIPT = _REPO / "scripts" / "show_task.py"


@pytest.fixture(name="show_task", scope="module")
def show_task_fixture():
  spec = importlib.util.spec_from_file_location("show_task", _SCRIPT)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture(autouse=True)
def _clear_gin():
  yield
  gin.clear_config(clear_constants=True)


def _quickstart_validation(count):
  lines = (pathlib.Path(ASSETS) / "validation.tsv").read_text().splitlines()[1:count + 1]
  return [line.split("\t") for line in lines]


def _shown(text):
  """(inputs, targets) of each example `show` printed."""
  inputs = [l[len("inputs: "):] for l in text.splitlines() if l.startswith("inputs: ")]
  targets = [l[len("targets: "):] for l in text.splitlines() if l.startswith("targets: ")]
  return [(eval(i), eval(t)) for i, t in zip(inputs, targets)]  # pylint: disable=eval-used


def test_lists_names(show_task, capsys):
  assert show_task.main(["--list", "_rte_v102"]) == 0
  names = capsys.readouterr().out.split()
  assert "taskless_super_glue_rte_v102" in names and "super_glue_rte_v102" in names
  assert show_task.main(["--list", "quickstart"]) == 0
  assert capsys.readouterr().out.split() == [
      "quickstart_review_sentiment", "quickstart_review_sentiment_rank_classification"]


def test_shows_examples(show_task):
  out = io.StringIO()
  with tfds.testing.mock_data(num_examples=2):
    show_task.show("taskless_super_glue_rte_v102", "validation", 2,
                   {"inputs": 8, "targets": 8}, out=out)
  text = out.getvalue()
  assert text.count("--- taskless_super_glue_rte_v102 [validation]") == 2
  assert "inputs: 'hypothesis: " in text and "(would be cut to 8)" in text


def test_shows_the_quickstart_task_by_name_and_through_its_gin_file(show_task, capsys):
  expected = [tuple(row) for row in _quickstart_validation(2)]
  assert show_task.main(["quickstart_review_sentiment", "-n", "2"]) == 0
  out = capsys.readouterr().out
  assert out.count("--- quickstart_review_sentiment [validation] example") == 2
  assert _shown(out) == expected
  assert show_task.main(["--gin_file=runs/quickstart.gin", "-n", "2"]) == 0
  assert _shown(capsys.readouterr().out) == expected


def test_shows_a_local_task_and_its_rank_twin_from_gin(show_task, capsys, tmp_path):
  path = tmp_path / "dev.tsv"
  path.write_text("inputs\ttargets\nthe soup is cold\tno\nthe tea is hot\tyes\n")
  config = tmp_path / "local.gin"
  config.write_text(f"""
import prompt_tuning.data
MIXTURE_OR_TASK_NAME = @prompt_tuning.data.local_task()
prompt_tuning.data.local_task.name = "my_shown_task"
prompt_tuning.data.local_task.paths = {{"validation": "{path}"}}
prompt_tuning.data.local_task.label_classes = ["no", "yes"]
""")
  assert show_task.main([f"--gin_file={config}", "-n", "5"]) == 0
  out = capsys.readouterr().out
  assert "--- my_shown_task [validation] example 1" in out
  assert _shown(out) == [("the soup is cold", "no"), ("the tea is hot", "yes")]
  assert show_task.main([
      f"--gin_file={config}", "-n", "2",
      "--gin.MIXTURE_OR_TASK_NAME=@prompt_tuning.data.rank_classification_twin()",
      "--gin.prompt_tuning.data.rank_classification_twin.task=@prompt_tuning.data.local_task()"
  ]) == 0
  out = capsys.readouterr().out
  assert "--- my_shown_task_rank_classification [validation] example 1" in out
  assert _shown(out) == [("the soup is cold", "no"), ("the soup is cold", "yes")]


def test_errors_are_one_line(show_task, capsys, tmp_path):
  assert show_task.main(["no_such_task"]) == 2
  assert capsys.readouterr().err == ("show_task.py: error: no task or mixture 'no_such_task': "
                                     "see --list\n")
  config = tmp_path / "broken.gin"
  config.write_text(f"""
import prompt_tuning.data
MIXTURE_OR_TASK_NAME = @prompt_tuning.data.local_task()
prompt_tuning.data.local_task.name = "broken"
prompt_tuning.data.local_task.paths = {{"validation": "{tmp_path / 'missing.tsv'}"}}
""")
  assert show_task.main([f"--gin_file={config}"]) == 2
  assert capsys.readouterr().err.splitlines() == [
      f"show_task.py: error: local task file {tmp_path / 'missing.tsv'} does not exist: fix "
      "the path in prompt_tuning.data.local_task.paths"]


def test_the_readme_command_for_the_quickstart_task():
  env = {**os.environ, "PYTHONPATH": str(_REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
  result = subprocess.run([sys.executable, str(_SCRIPT), "quickstart_review_sentiment", "-n", "3"],
                          cwd=_REPO, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  assert _shown(result.stdout) == [tuple(row) for row in _quickstart_validation(3)]
