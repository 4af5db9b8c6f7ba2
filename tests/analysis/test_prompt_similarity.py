"""SPoT's prompt similarities and the script that ranks source prompts for a target."""
import json
import os
import sys

import numpy as np
import pytest

from prompt_tuning.analysis import prompt_similarity as sim

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import rank_source_prompts  # noqa: E402  the script, in-process


def _cos(a, b):
  return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_measures_equal_their_definitions():
  rng = np.random.RandomState(0)
  source, target = rng.normal(size=(3, 8)), rng.normal(size=(5, 8))
  got = sim.similarities(source, target)
  pairs = np.array([[_cos(s, t) for t in target] for s in source])
  assert got["average_tokens"] == pytest.approx(_cos(source.mean(0), target.mean(0)))
  assert got["per_token_average"] == pytest.approx(pairs.mean())
  assert got["per_token_max"] == pytest.approx(np.mean([pairs[:, j].max() for j in range(5)]))
  # A prompt against itself, reordered and rescaled: every measure is 1 (the order never counts).
  same = sim.similarities(3.0 * target[::-1], target)
  assert same["average_tokens"] == pytest.approx(1.0) and same["per_token_max"] == pytest.approx(1.0)
  assert same["per_token_average"] == pytest.approx(np.mean([[_cos(a, b) for b in target] for a in target]))


def test_sources_rank_most_similar_first():
  rng = np.random.RandomState(1)
  target = rng.normal(size=(4, 8))
  sources = {"near": target + 0.1 * rng.normal(size=(4, 8)), "far": -target, "other": rng.normal(size=(6, 8))}
  rows = sim.rank(target, sources)
  assert [r["source"] for r in rows] == ["near", "other", "far"]
  assert [r["source"] for r in sim.rank(target, sources, by="per_token_max")][0] == "near"
  with pytest.raises(ValueError, match="unknown measure"):
    sim.rank(target, sources, by="euclid")
  with pytest.raises(ValueError, match="one model size"):
    sim.similarities(np.ones((2, 4)), np.ones((2, 8)))
  with pytest.raises(ValueError, match="export one task's prompt"):
    sim.similarities(np.ones((2, 2, 4)), np.ones((2, 4)))


class _Result:
  def __init__(self, returncode, out):
    self.returncode, self.stdout, self.stderr = returncode, out.out, out.err


def _script(capsys, *args):
  """The script's main on `args`: its exit status, stdout and stderr."""
  code = rank_source_prompts.main(list(args))
  return _Result(code, capsys.readouterr())


def test_script_prints_the_table_and_json(tmp_path, capsys):
  rng = np.random.RandomState(2)
  target = rng.normal(size=(4, 8)).astype(np.float32)
  np.save(tmp_path / "target.npy", target)
  np.save(tmp_path / "close.npy", target + 0.05)
  np.save(tmp_path / "b.npy", rng.normal(size=(4, 8)).astype(np.float32))
  text = _script(capsys, str(tmp_path / "target.npy"), str(tmp_path / "close.npy"), f"random={tmp_path}/b.npy")
  assert text.returncode == 0, text.stderr
  lines = text.stdout.splitlines()
  assert lines[0].split() == ["rank", "source", *sim.MEASURES]
  assert lines[1].split()[:2] == ["1", "close"] and lines[2].split()[:2] == ["2", "random"]
  out = _script(capsys, str(tmp_path / "target.npy"), str(tmp_path / "close.npy"), f"random={tmp_path}/b.npy", "--json")
  ranking = json.loads(out.stdout)["ranking"]
  assert [r["source"] for r in ranking] == ["close", "random"]
  assert ranking[0]["average_tokens"] == pytest.approx(float(lines[1].split()[2]), abs=1e-4)
  bad = _script(capsys, str(tmp_path / "target.npy"), f"x={tmp_path}/b.npy", f"x={tmp_path}/close.npy")
  assert bad.returncode == 2 and bad.stderr.startswith("rank_source_prompts: error: two sources share a name")
  missing = _script(capsys, str(tmp_path / "target.npy"), str(tmp_path / "none.npy"))
  assert missing.returncode == 2 and "does not exist" in missing.stderr and missing.stdout == ""
