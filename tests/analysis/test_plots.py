"""Plots: the plotted points (CSV rows and the figure's line data) against hand-computed means."""
import csv
import json
import os

import jax
import numpy as np
import pytest

from prompt_tuning.model import prompts, t5
from prompt_tuning.analysis import plots
from prompt_tuning.checkpoints import restore
from tests.sweeps.sweeps_testlib import write_json

TASK = "quickstart_review_sentiment"
SUPER_GLUE = ("boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc")
QUICKSTART = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                          "prompt_tuning", "assets", "quickstart", "t5_1_1_tiny_lm")


def _run(folder, size, seed, evals):
  """A MODEL_DIR of a T5 1.1 `size` with eval lines [(step, {task: accuracy})]."""
  os.makedirs(folder)
  sizes = "".join(f"T5Config.{k} = {v}\n" for k, v in t5.SIZES[size].items())
  with open(os.path.join(folder, "config.gin"), "w") as f:
    f.write(f"SEED = {seed}\nT5Config.vocab_size = 32128\n{sizes}")
  with open(os.path.join(folder, "metrics.jsonl"), "w") as f:
    for step, tasks in evals:
      f.write(json.dumps({"step": step, "train/loss": 10.0 - step, "train/cross_ent_per_token": 5.0 / step}) + "\n")
      row = {f"eval/{t}/accuracy": v for t, v in tasks.items()}
      f.write(json.dumps({"step": step, **row, "eval/score": float(np.mean(list(tasks.values())))}) + "\n")


def _sweep(root, runs):
  """A sweep root whose runs are {name: settings}; SEED and task axes are averaged over."""
  entries = [{"name": n, "dir": os.path.join(root, n), "settings": s, "entry": "train", "select": "eval/score"}
             for n, s in runs.items()]
  axes = {"SEED": {"kind": "macro", "binds": ["SEED"]}, "task": {"kind": "linked", "binds": ["MIXTURE_OR_TASK_NAME"]}}
  write_json(os.path.join(root, "sweep.json"), {"format": "prompt_tuning.sweep/1", "runs": entries, "axes": axes})
  return str(root)


def _lines(fig):
  return {line.get_label(): line.get_xydata() for line in fig.axes[0].lines}


def _csv(path):
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def test_figure3_at_one_size_with_model_tuning_as_a_reference(tmp_path):
  runs, expected = {}, {}
  for init, offset in (("random_uniform", 0.0), ("class_label", 20.0)):
    for length in (1, 5, 100):
      for seed in (0, 1):
        name = f"p{length}_{init}_s{seed}"
        runs[name] = {"method": "prompt", "PROMPT_LENGTH": str(length), "init": init, "SEED": str(seed)}
        best = 50.0 + offset + length / 10 + 3 * seed  # then a worse evaluation
        _run(tmp_path / name, "small", seed, [(100, {TASK: best}), (200, {TASK: best - 1})])
        expected.setdefault((init, length), []).append(best)
  for seed, value in ((0, 90.0), (1, 94.0)):
    runs[f"model_s{seed}"] = {"method": "model", "SEED": str(seed)}
    _run(tmp_path / f"model_s{seed}", "small", seed, [(50, {TASK: value})])
  fig, rows = plots.figure3([_sweep(tmp_path, runs)], "PROMPT_LENGTH")
  lines = _lines(fig)
  for init in ("random_uniform", "class_label"):
    xy = lines[f"method=prompt,init={init}"]
    np.testing.assert_allclose(xy[:, 0], [1, 5, 100])
    np.testing.assert_allclose(xy[:, 1], [np.mean(expected[(init, n)]) for n in (1, 5, 100)], atol=0.005)
  np.testing.assert_allclose(lines["method=model (reference)"][:, 1], [92.0, 92.0])
  assert fig.axes[0].get_xscale() == "log"
  paths = plots.save(fig, plots.SCORE_HEADER, rows, str(tmp_path / "plots" / "figure3"))
  assert [os.path.getsize(p) > 0 for p in paths] == [True] * 3
  table = _csv(paths[2])
  assert len(table) == 7
  first = table[0]
  assert (first["line"], float(first["x"]), int(first["n"])) == ("method=prompt,init=random_uniform", 1.0, 2)
  assert float(first["mean"]) == pytest.approx(np.mean(expected[("random_uniform", 1)]), abs=0.005)
  assert float(first["std"]) == pytest.approx(np.std(expected[("random_uniform", 1)], ddof=1), abs=0.005)
  assert table[-1] == {"line": "method=model", "x": "", "x_label": "reference", "mean": "92.0",
                       "std": str(round(np.std([90.0, 94.0], ddof=1), 2)), "n": "2"}


def test_figure1_super_glue_score_against_parameter_count(tmp_path):
  runs, scores = {}, {}
  for size in ("small", "base"):
    for method, offset in (("prompt", 0.0), ("model", 5.0)):
      for seed in (0, 1):
        for i, task in enumerate(SUPER_GLUE):
          name = f"{size}_{method}_{task}_s{seed}"
          runs[name] = {"size": size, "method": method, "task": task, "SEED": str(seed)}
          value = 40.0 + i + offset + 10 * (size == "base") + seed
          _run(tmp_path / name, size, seed, [(10, {f"taskless_super_glue_{task}_v102": value})])
        scores.setdefault((size, method), []).append(np.mean([40.0 + i + offset + 10 * (size == "base") + seed
                                                              for i in range(8)]))
  fig, rows = plots.figure1([_sweep(tmp_path, runs)])
  lines = _lines(fig)
  assert sorted(lines) == ["model", "prompt"]
  counts = [t5.param_count(t5.config_for(s)) for s in ("small", "base")]
  assert counts == [76961152, 247577856]
  for method in ("prompt", "model"):
    np.testing.assert_allclose(lines[method][:, 0], counts)
    np.testing.assert_allclose(lines[method][:, 1], [np.mean(scores[(s, method)]) for s in ("small", "base")])
  assert fig.axes[0].get_xscale() == "log" and fig.axes[0].get_ylabel() == "SuperGLUE score (mean ± std)"
  assert [r[:3] for r in rows] == [["prompt", counts[0], counts[0]], ["prompt", counts[1], counts[1]],
                                   ["model", counts[0], counts[0]], ["model", counts[1], counts[1]]]
  assert rows[0][5] == 2 and rows[0][4] == pytest.approx(np.std(scores[("small", "prompt")], ddof=1), abs=0.005)


def test_training_curves_of_every_run(tmp_path):
  runs = {"a": {"SEED": "0"}, "b": {"SEED": "1"}}
  _run(tmp_path / "a", "small", 0, [(1, {TASK: 10.0}), (2, {TASK: 30.0})])
  _run(tmp_path / "b", "small", 1, [(1, {TASK: 20.0})])
  os.makedirs(tmp_path / "c")  # a run that has not started is left out
  fig, rows = plots.curves([_sweep(tmp_path, {**runs, "c": {"SEED": "2"}})])
  loss_ax, eval_ax = fig.axes
  assert {l.get_label(): l.get_xydata().tolist() for l in eval_ax.lines} == {"a": [[1, 10.0], [2, 30.0]],
                                                                             "b": [[1, 20.0]]}
  assert loss_ax.lines[0].get_xydata().tolist() == [[1, 5.0], [2, 2.5]]
  assert ["a", "eval/score", 2, 30.0] in rows and ["b", "train loss", 1, 5.0] in rows


def test_neighbour_report_as_an_image(tmp_path):
  embedding = restore.open_backbone(QUICKSTART)["token_embedder/embedding"].read()
  init = prompts.from_string("positive negative")
  path = str(tmp_path / "prompt.npy")
  np.save(path, np.asarray(init(jax.random.PRNGKey(0), (4, embedding.shape[1]), embedding)))
  fig, rows = plots.neighbor_table(path, QUICKSTART, top_k=3, labels=["positive"])
  assert len(rows) == 4 * 3 and rows[0][:3] == [0, 1, "▁positive"] and rows[0][3] == pytest.approx(1.0, abs=1e-4)
  assert rows[3][:3] == [1, 1, "▁negative"]
  ax = fig.axes[0]
  np.testing.assert_allclose(np.asarray(ax.images[0].get_array()), np.array([r[3] for r in rows]).reshape(4, 3))
  texts = {t.get_text(): t.get_fontweight() for t in ax.texts}
  assert texts[f"▁positive {rows[0][3]:.2f}"] == "bold" and texts[f"▁negative {rows[3][3]:.2f}"] == "normal"
