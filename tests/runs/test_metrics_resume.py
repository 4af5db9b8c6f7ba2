"""A resumed run's logs equal the uninterrupted run's: metrics.jsonl keeps one line per logged
step, and TensorBoard (reading every event file) shows the resumed values, not the stale ones."""
import json

from prompt_tuning.runs import metrics_writer


def _tensorboard(folder):
  from tensorboard.backend.event_processing import plugin_event_accumulator
  from tensorboard.util import tensor_util
  accumulator = plugin_event_accumulator.EventAccumulator(str(folder / "tensorboard"))
  accumulator.Reload()
  return [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in accumulator.Tensors("train/loss")]


def test_resume_drops_what_the_killed_run_logged_after_its_checkpoint(tmp_path):
  killed = metrics_writer.MetricsWriter(str(tmp_path))  # logged steps 1..6, checkpointed at 4
  for step in range(1, 7):
    killed.write(step, {"train/loss": float(step)})
  killed.close()
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 7, "train/lo')  # killed in the middle of a line
  resumed = metrics_writer.MetricsWriter(str(tmp_path), start_step=4)
  for step in range(5, 9):
    resumed.write(step, {"train/loss": 100.0 + step})
  resumed.close()
  rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
  expected = [(s, float(s)) for s in range(1, 5)] + [(s, 100.0 + s) for s in range(5, 9)]
  assert [(r["step"], r["train/loss"]) for r in rows] == expected
  assert _tensorboard(tmp_path) == expected


def test_a_new_run_keeps_nothing_of_a_run_killed_before_its_first_checkpoint(tmp_path):
  first = metrics_writer.MetricsWriter(str(tmp_path))
  first.write(1, {"train/loss": 9.0})
  first.close()
  again = metrics_writer.MetricsWriter(str(tmp_path), start_step=0)
  again.write(1, {"train/loss": 1.0})
  again.close()
  assert [json.loads(line) for line in open(tmp_path / "metrics.jsonl")] == [{"step": 1, "train/loss": 1.0}]
  assert _tensorboard(tmp_path) == [(1, 1.0)]


def test_each_write_is_on_disk_when_it_returns(tmp_path):
  """A run killed (SIGKILL: no close, no flush) right after a checkpoint keeps every event it
  logged before it; events queued for a writer thread would be lost."""
  writer = metrics_writer.MetricsWriter(str(tmp_path))
  for step in range(1, 4):
    writer.write(step, {"train/loss": float(step)})
    assert _tensorboard(tmp_path) == [(s, float(s)) for s in range(1, step + 1)]
  writer.close()
