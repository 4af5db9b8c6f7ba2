"""Problems in local TSV/JSONL files are one-line errors, found before a run writes anything."""
import os

import pytest

from prompt_tuning.config.errors import UsageError
from prompt_tuning.data import local
from prompt_tuning.data.quickstart import ASSETS
from tests.runs import runs_testlib

# case -> (file name, content, what the error says)
BAD_FILES = {
    "missing file": ("missing.tsv", None, "missing.tsv does not exist: fix the path in "
                     "prompt_tuning.data.local_task.paths"),
    "missing column": ("train.tsv", "text\ttargets\nso good\tpositive\n",
                       "train.tsv has no column 'inputs' (it has 'text', 'targets'): set "
                       "local_task.inputs_column / targets_column to its names"),
    "empty file": ("train.tsv", "", "train.tsv is empty: a TSV file needs a header row"),
    "header only": ("train.tsv", "inputs\ttargets\n", "train.tsv has no examples: add one per "
                    "line below the header row"),
    "row without a target": ("train.tsv", "inputs\ttargets\nso good\tpositive\nso bad\n",
                             "train.tsv line 3 has no 'targets' value: fill it in or remove "
                             "the line"),
    "bad UTF-8": ("train.tsv", b"inputs\ttargets\nso good\tpositive\nso \xff bad\tnegative\n",
                  "train.tsv line 3 is not UTF-8 text (byte 4 of the line): save the file "
                  "as UTF-8"),
    "JSONL line not JSON": ("train.jsonl", '{"inputs": "so good", "targets": "positive"}\n'
                            '{"inputs": "so bad", targets: "negative"}\n',
                            "train.jsonl line 2 is not JSON (Expecting property name enclosed "
                            "in double quotes at column 22): write one JSON object per line"),
}
MORE_BAD_FILES = {
    "unknown file type": ("train.csv", "inputs,targets\n", "train.csv has the unknown type "
                          "'.csv': name it .tsv"),
    "stray tab": ("train.tsv", "inputs\ttargets\nso\tgood\tpositive\n",
                  "train.tsv line 2 has 3 tab-separated fields but the header names 2: remove "
                  "the extra tabs"),
    "JSONL line not an object": ("train.jsonl", '["so good", "positive"]\n',
                                 "train.jsonl line 1 is a JSON list, not an object"),
    "JSONL line without a target": ("train.jsonl", '{"inputs": "a", "targets": "positive"}\n'
                                    '{"inputs": "b", "targets": null}\n',
                                    "train.jsonl line 2 has no 'targets' value"),
    "empty JSONL": ("train.jsonl", "\n\n", "train.jsonl has no examples: add one per line"),
    "target outside label_classes": ("train.tsv", "inputs\ttargets\nso good\tyes\n",
                                     "train.tsv has the target 'yes', which is not one of "
                                     "label_classes ['positive', 'negative']"),
}
LABELS = ["positive", "negative"]


def _write(tmp_path, file_name, content):
  path = tmp_path / file_name
  if isinstance(content, bytes):
    path.write_bytes(content)
  elif content is not None:
    path.write_text(content, encoding="utf-8")
  return path


@pytest.mark.parametrize("case", sorted({**BAD_FILES, **MORE_BAD_FILES}))
def test_bad_local_file_is_refused_at_registration(case, tmp_path):
  file_name, content, message = {**BAD_FILES, **MORE_BAD_FILES}[case]
  path = _write(tmp_path, file_name, content)
  with pytest.raises(UsageError) as raised:
    local.local_task(name="broken_local", paths={"train": str(path)}, label_classes=LABELS)
  first_line = str(raised.value).splitlines()[0]  # gin appends the configurable's name below.
  assert message in first_line and str(path) in first_line


def test_unknown_metric_is_refused(tmp_path):
  path = _write(tmp_path, "train.tsv", "inputs\ttargets\nso good\tpositive\n")
  with pytest.raises(UsageError, match="unknown metric 'bleu' for local task 'x': choose from "
                     "accuracy, f1, macro_f1, matthews_corrcoef"):
    local.local_task(name="x", paths={"train": str(path)}, label_classes=LABELS,
                     metric_names=["bleu"])


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_local_file_is_one_line_through_the_train_cli(case, tmp_path):
  file_name, content, message = BAD_FILES[case]
  path = _write(tmp_path, file_name, content)
  config = tmp_path / "local.gin"
  config.write_text(f"""
import prompt_tuning.data
MIXTURE_OR_TASK_NAME = @prompt_tuning.data.local_task()
prompt_tuning.data.local_task.name = "broken_local"
prompt_tuning.data.local_task.paths = {{"train": "{path}",
                                        "validation": "{os.path.join(ASSETS, 'validation.tsv')}"}}
prompt_tuning.data.local_task.label_classes = {LABELS}
""")
  model_dir = tmp_path / "run"
  result = runs_testlib.run_cli("train", *runs_testlib.TINY, f"--gin_file={config}",
                                f"--gin.MODEL_DIR={model_dir}")
  assert result.returncode == 2, result.stderr
  [line] = runs_testlib.error_lines(result.stderr)
  assert line.startswith("prompt_tuning.train: error: ") and message in line and str(path) in line
  assert "Traceback" not in result.stderr and result.stdout == ""
  assert not model_dir.exists()
