"""Packed training: the packed stream holds the padded stream's examples, resumes exactly, trains."""
import itertools
import json

import numpy as np
import pytest

from prompt_tuning import train as train_main
from prompt_tuning.data import pipeline as inputs
from prompt_tuning.data import quickstart
from prompt_tuning.training import packing
from tests.runs import runs_testlib
from tests.runs.runs_testlib import TINY

LENGTHS = {"inputs": 64, "targets": 4}  # room for several quickstart reviews per row
P = 4


@pytest.fixture(autouse=True)
def _clean_gin():
  yield
  runs_testlib.clear_gin()


def _rows(batch):
  """(inputs, targets) of each real padded row."""
  return [(x[x > 0].tolist(), y[y > 0].tolist())
          for x, y in zip(batch["encoder_input_tokens"], batch["decoder_target_tokens"]) if y.any()]


def _segments(batch):
  out = []
  for r in range(len(batch["encoder_input_tokens"])):
    enc, dec = batch["encoder_segment_ids"][r], batch["decoder_segment_ids"][r]
    for s in range(1, enc.max() + 1):
      out.append((batch["encoder_input_tokens"][r][enc == s][P:].tolist(),
                  batch["decoder_target_tokens"][r][dec == s].tolist()))
  return out


def test_the_first_packed_batch_holds_the_first_examples_of_the_padded_stream():
  name = quickstart.task()
  packed = next(inputs.train_batches(name, LENGTHS, 8, seed=0, pack_prompt_length=P))
  assert packed["encoder_input_tokens"].shape == (8, 64 + P)
  assert packed["decoder_target_tokens"].shape == (8, packing.TARGETS_PER_ROW * 4)
  segments = _segments(packed)
  padded = itertools.chain.from_iterable(
      _rows(b) for b in inputs.train_batches(name, LENGTHS, 8, seed=0))
  first = list(itertools.islice(padded, len(segments)))
  assert sorted(segments) == sorted(first)
  assert len(segments) >= 24  # 35 measured: over 4 of the short reviews per row


def test_resuming_a_packed_stream_skips_exactly_the_consumed_batches():
  name = quickstart.task()
  stream = inputs.train_batches(name, LENGTHS, 8, seed=1, pack_prompt_length=P)
  second = list(itertools.islice(stream, 2))[1]
  resumed = next(inputs.train_batches(name, LENGTHS, 8, seed=1, pack_prompt_length=P, position=1))
  for key in second:
    np.testing.assert_array_equal(second[key], resumed[key])


def test_a_packed_run_trains_and_counts_examples_not_rows(tmp_path):
  argv = TINY + ["--gin.BATCH_SIZE=8", "--gin.PACK=True", f"--gin.MODEL_DIR={tmp_path}",
                 "--gin.TASK_FEATURE_LENGTHS={'inputs': 64, 'targets': 4}"]
  assert train_main.main(argv) == 0
  lines = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
  train = [l for l in lines if "train/loss" in l]
  assert len(train) == 4
  for line in train:  # one line per step (LOG_PERIOD=1): examples > rows
    rate = line["train/examples_per_second"] / line["train/steps_per_second"]
    assert rate >= 24  # about 35 examples in 8 rows
  assert any("eval/" in k for l in lines for k in l)


def test_packing_with_length_buckets_is_refused(capsys, tmp_path):
  argv = TINY + ["--gin.BATCH_SIZE=8", "--gin.PACK=True", "--gin.LENGTH_BUCKETS=(8, 16)",
                 f"--gin.MODEL_DIR={tmp_path}/m"]
  assert train_main.main(argv) != 0
  err = [l for l in capsys.readouterr().err.splitlines() if l.startswith("prompt_tuning.")]
  assert len(err) == 1 and "PACK" in err[0]
  assert not (tmp_path / "m").exists()
