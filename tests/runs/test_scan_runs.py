"""SCAN_LAYERS through the train entry point on the real quickstart checkpoint: the same run as the
unrolled layers, and a resume in the other layout refused in one line with nothing written."""
import json
import os

import numpy as np
import pytest

from prompt_tuning import train as train_main
from tests.runs import runs_testlib
from tests.runs.runs_testlib import TINY

# In-process runs see the tests' 8 CPU devices: batch 8 splits over them. Float32, so the two
# layouts must agree to rounding.
TRAIN = TINY + ["--gin.BATCH_SIZE=8", "--gin.ACTIVATION_DTYPE='float32'"]


@pytest.fixture(autouse=True)
def _clean_gin():
  yield
  runs_testlib.clear_gin()


def _metrics(model_dir):
  return [json.loads(line) for line in open(os.path.join(model_dir, "metrics.jsonl"))]


def test_a_scanned_run_equals_the_unrolled_run_and_refuses_to_resume_unrolled(capsys, tmp_path):
  dirs = {scan: str(tmp_path / f"scan_{scan}") for scan in (False, True)}
  for scan, model_dir in dirs.items():
    assert train_main.main(TRAIN + [f"--gin.MODEL_DIR={model_dir}", f"--gin.SCAN_LAYERS={scan}"]) == 0
    runs_testlib.clear_gin()
  lines = {scan: _metrics(d) for scan, d in dirs.items()}
  for key in ("train/loss", "eval/score"):
    values = {scan: [l[key] for l in lines[scan] if key in l] for scan in dirs}
    assert len(values[True]) == len(values[False]) > 0
    np.testing.assert_allclose(values[True], values[False], rtol=1e-5, atol=1e-6)
  prompts = [np.load(os.path.join(d, "prompts", "prompt_4.npy")) for d in dirs.values()]
  np.testing.assert_allclose(prompts[1], prompts[0], atol=1e-5)
  assert json.load(open(os.path.join(dirs[True], "checkpoint_4", "metadata.json")))["scan_layers"] is True

  before = sorted(os.listdir(dirs[True])), open(os.path.join(dirs[True], "metrics.jsonl")).read()
  capsys.readouterr()
  code = train_main.main(TRAIN + [f"--gin.MODEL_DIR={dirs[True]}", "--gin.SCAN_LAYERS=False",
                                  "--gin.TRAIN_STEPS=6"])
  err = [l for l in capsys.readouterr().err.splitlines() if l.startswith("prompt_tuning.")]
  assert code == 2 and len(err) == 1, err
  assert "checkpoint_4 was saved with SCAN_LAYERS = True but this run has SCAN_LAYERS = False" in err[0]
  assert (sorted(os.listdir(dirs[True])), open(os.path.join(dirs[True], "metrics.jsonl")).read()) == before
