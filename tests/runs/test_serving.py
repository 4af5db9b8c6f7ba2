"""Per-task prompts served by one frozen model: `prompt_tuning.infer` with a {task: file} dict."""
import json

import numpy as np
import pytest

from prompt_tuning import infer as infer_main
from prompt_tuning.data import local
from prompt_tuning.data import quickstart
from prompt_tuning.data import registry
from tests.runs import runs_testlib

COMMON = ["--gin_file=runs/quickstart_infer.gin", "--gin.PROMPT_LENGTH=4", "--gin.INFER_MAX_EXAMPLES=5",
          "--gin.BATCH_SIZE=4"]


@pytest.fixture(autouse=True)
def _clean_gin():
  yield
  runs_testlib.clear_gin()


@pytest.fixture(name="pair")
def pair_fixture(tmp_path):
  """A mixture of the quickstart task and a copy under another name, and two random prompts."""
  first = quickstart.task()
  second = local.local_task(name="quickstart_copy", label_classes=list(quickstart.LABELS),
                            paths={"validation": f"{quickstart.ASSETS}/validation.tsv"})
  registry.add_mixture("quickstart_pair", [first, second])
  rng = np.random.RandomState(0)
  files = {}
  for name in (first, second):
    files[name] = str(tmp_path / f"{name}.npy")
    np.save(files[name], rng.uniform(-0.5, 0.5, (4, 64)).astype(np.float32))
  return files


def _rows(folder, task, mode):
  return [json.loads(l) for l in open(folder / f"{task}.validation.{mode}.jsonl")]


@pytest.mark.parametrize("mode, key", [("predict", "prediction"), ("score", "score")])
def test_each_task_gets_its_prompt_in_mixed_batches(pair, tmp_path, capsys, mode, key):
  """Batches of 4 over 2 tasks x 5 examples mix the tasks; every output equals that task's
  prompt run alone."""
  mixed = tmp_path / "mixed"
  assert infer_main.main(COMMON + ["--gin.MIXTURE_OR_TASK_NAME='quickstart_pair'", f"--gin.INFER_MODE={mode}",
                                   f"--gin.PROMPT_FILE={pair}", f"--gin.INFER_OUTPUT_DIR={mixed}"]) == 0
  for task, path in pair.items():
    runs_testlib.clear_gin()
    alone = tmp_path / f"alone_{task}"
    assert infer_main.main(COMMON + [f"--gin.MIXTURE_OR_TASK_NAME='{task}'", f"--gin.INFER_MODE={mode}",
                                     f"--gin.PROMPT_FILE={path}", f"--gin.INFER_OUTPUT_DIR={alone}"]) == 0
    got, want = _rows(mixed, task, mode), _rows(alone, task, mode)
    assert len(got) == 5 and [r["inputs"] for r in got] == [r["inputs"] for r in want]
    if mode == "score":
      np.testing.assert_allclose([r[key] for r in got], [r[key] for r in want], rtol=1e-5)
    else:
      assert [r[key] for r in got] == [r[key] for r in want]
  # Same inputs, different prompts: the two tasks' scores differ.
  if mode == "score":
    a, b = (_rows(mixed, t, mode) for t in pair)
    assert [r[key] for r in a] != [r[key] for r in b]


def test_a_task_without_a_prompt_is_a_one_line_error(pair, tmp_path, capsys):
  first = next(iter(pair))
  code = infer_main.main(COMMON + ["--gin.MIXTURE_OR_TASK_NAME='quickstart_pair'",
                                   f"--gin.PROMPT_FILE={{'{first}': '{pair[first]}'}}",
                                   f"--gin.INFER_OUTPUT_DIR={tmp_path}/out"])
  err = [l for l in capsys.readouterr().err.splitlines() if l.startswith("prompt_tuning.")]
  assert code == 2 and len(err) == 1 and "one prompt file per task" in err[0]
  assert not (tmp_path / "out").exists()
