"""The paper's figures from sweep roots and runs: PNG, SVG and the plotted points as CSV.

  figure1    score vs the model's parameter count (log x), mean ± std over seeds (the band), one
             line per method (`--line` another setting);
  figure3    score vs size, one line per value of `--setting`; with a single size, score vs the
             setting (log x for numbers spanning 10x or more, else evenly spaced);
  curves     train loss and eval score vs step, one line per run;
  neighbors  a prompt's nearest vocabulary pieces (`prompt_tuning.neighbors`): positions x top-k,
             each cell the piece and its cosine similarity, coloured by it.
Groups without the x setting (model tuning next to prompt lengths) are drawn as dashed
reference lines across the plot. The score is the SuperGLUE score where every group has one,
else the task metric when there is only one (`--metric` chooses: `super_glue` or
`<task>/<metric>`). Files go to `--out PREFIX` (.png, .svg, .csv), by default
`<first path>/plots/<kind>`.
"""
from __future__ import annotations

import argparse
import ast
import csv
import dataclasses
import json
import os
from typing import Optional, Sequence

import numpy as np

from prompt_tuning.analysis import summaries
from prompt_tuning.sweeps import plan as sweep_plan
from prompt_tuning.sweeps.spec import SweepError

PARAMS = "model parameters"  # the x axis of size plots
_ALL = "all runs"


@dataclasses.dataclass
class Series:
  """One plotted line: points (x, mean, std, n), or a reference level when `xs` is None."""
  label: str
  xs: Optional[list]
  means: list
  stds: list
  ns: list
  x_labels: Optional[list] = None


def _pyplot():
  import matplotlib
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt
  return plt


# ----------------------------------------------------------------------------- points


def _value(entry: dict, metric: str) -> Optional[dict]:
  return (entry["scores"] if metric == summaries.SUPER_GLUE else entry["metrics"]).get(metric)


def choose_metric(summary: Sequence[dict], metric: Optional[str]) -> str:
  """`metric`, checked; by default the SuperGLUE score, else the only task metric."""
  names = sorted({m for e in summary for m in e["metrics"]})
  if metric is None:
    if all(summaries.SUPER_GLUE in e["scores"] for e in summary):
      return summaries.SUPER_GLUE
    if len(names) != 1:
      raise SweepError(f"the runs have several metrics and no SuperGLUE score: choose one with --metric "
                       f"({', '.join(names[:6])}{', ...' if len(names) > 6 else ''})")
    return names[0]
  if not any(_value(e, metric) for e in summary):
    raise SweepError(f"--metric {metric}: no run has it (they have {summaries.SUPER_GLUE}, "
                     f"{', '.join(names[:6])})")
  return metric


def _number(text):
  try:
    value = ast.literal_eval(str(text))
  except (ValueError, SyntaxError):
    return None
  return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _label(settings: dict, skip: Sequence[str]) -> str:
  return ",".join(f"{k}={v}" for k, v in settings.items() if k not in skip) or _ALL


def _constant(summary: Sequence[dict]) -> list:
  """Settings with one value in every group: left out of line labels."""
  values = {}
  for entry in summary:
    for k, v in entry["settings"].items():
      values.setdefault(k, set()).add(str(v))
  return [k for k, v in values.items() if len(v) == 1 and all(k in e["settings"] for e in summary)]


def series(summary: Sequence[dict], metric: str, x: str, line: Optional[str]) -> tuple[list, Optional[list]]:
  """(lines, x tick labels or None) of `metric` against setting `x` ("params": the parameter
  count), one line per value of `line` or else per remaining settings; groups without `x` become
  reference levels. Numeric x values are plotted as numbers, others evenly spaced."""
  lines, skip = {}, _constant(summary)
  for entry in summary:
    value, settings = _value(entry, metric), entry["settings"]
    if value is None:
      continue
    has_x = x == "params" or x in settings
    own = [x, "size"] if has_x else []
    key = str(settings[line]) if line in settings else _label(settings, skip + own)
    key = _label(settings, own) if key == _ALL else key  # one line: say what it holds
    point = entry["params"] if x == "params" else settings.get(x)
    if has_x and point is None:
      raise SweepError(f"no parameter count for {_label(settings, [])}: its config.gin has no T5Config sizes")
    s = lines.setdefault((has_x, key), Series(key, [] if has_x else None, [], [], []))
    if has_x and point in s.xs:
      raise SweepError(f"two groups of line {key!r} fall on {x}={point}: they differ in another setting; "
                       "choose --line, or see them with summarize")
    if has_x:
      s.xs.append(point)
    s.means.append(value["mean"])
    s.stds.append(value["std"])
    s.ns.append(value["n"])
  return _placed(list(lines.values()))


def _placed(lines: list) -> tuple[list, Optional[list]]:
  """Points in x order; non-numeric x values at 0, 1, ... in the order they first appear."""
  values = [v for s in lines if s.xs is not None for v in s.xs]
  numeric = all(_number(v) is not None for v in values)
  ticks = None if numeric else [str(v) for v in dict.fromkeys(values)]
  out = []
  for s in lines:
    if s.xs is None:
      out.append(s)
      continue
    xs = [_number(v) if numeric else ticks.index(str(v)) for v in s.xs]
    order = np.argsort(xs, kind="stable")
    out.append(Series(s.label, [xs[i] for i in order], *([getattr(s, f)[i] for i in order]
                                                         for f in ("means", "stds", "ns"))))
  return out, ticks


# ----------------------------------------------------------------------------- drawing


def draw(lines: Sequence[Series], ticks: Optional[list], x_label: str, y_label: str, title: str,
         log_x: bool):
  """The figure: a line per series with a ± std band, dashed levels for references."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(6.4, 4.4))
  for s in (s for s in lines if s.xs is not None):
    (plotted,) = ax.plot(s.xs, s.means, marker="o", label=s.label)
    std = np.array([np.nan if v is None else v for v in s.stds], float)
    ax.fill_between(s.xs, np.array(s.means) - std, np.array(s.means) + std, alpha=0.2,
                    color=plotted.get_color(), linewidth=0)
  for s, style in zip((s for s in lines if s.xs is None), ("--", ":", "-.") * len(lines)):
    ax.axhline(s.means[0], linestyle=style, color="0.25", label=f"{s.label} (reference)")
    if s.stds[0] is not None:
      ax.axhspan(s.means[0] - s.stds[0], s.means[0] + s.stds[0], alpha=0.1, color="0.25", linewidth=0)
  if log_x:
    ax.set_xscale("log")
  if ticks is not None:
    ax.set_xticks(range(len(ticks)), ticks)
  elif x_label != PARAMS:  # the setting's own values as ticks
    values = sorted({x for s in lines if s.xs is not None for x in s.xs})
    ax.set_xticks(values, [f"{v:g}" for v in values])
    ax.minorticks_off()
  ax.set(xlabel=x_label, ylabel=f"{y_label} (mean ± std)", title=title)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  return fig


def _rows(lines: Sequence[Series], ticks: Optional[list]) -> list:
  rows = []
  for s in lines:
    for i, mean in enumerate(s.means):
      x = "" if s.xs is None else s.xs[i]
      x_label = "reference" if s.xs is None else ticks[x] if ticks else x
      rows.append([s.label, x, x_label, mean, "" if s.stds[i] is None else s.stds[i], s.ns[i]])
  return rows


SCORE_HEADER = ["line", "x", "x_label", "mean", "std", "n"]


def save(fig, header: Sequence[str], rows: Sequence[Sequence], out: str) -> list:
  """out.png, out.svg and out.csv (the plotted points)."""
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  fig.savefig(out + ".png", dpi=150, bbox_inches="tight")
  fig.savefig(out + ".svg", bbox_inches="tight")
  with open(out + ".csv", "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(rows)
  _pyplot().close(fig)
  return [out + ext for ext in (".png", ".svg", ".csv")]


# ----------------------------------------------------------------------------- kinds


def _y_label(metric: str) -> str:
  return "SuperGLUE score" if metric == summaries.SUPER_GLUE else metric


def figure1(paths: Sequence[str], metric: Optional[str] = None, line: str = "method",
            select: Optional[str] = None):
  """(figure, CSV rows): score vs parameter count, a line per `line` value."""
  summary = summaries.summarize(summaries.collect(paths, select)[0])
  metric = choose_metric(summary, metric)
  lines, ticks = series(summary, metric, "params", line)
  return draw(lines, ticks, PARAMS, _y_label(metric), "score vs model size", True), _rows(lines, ticks)


def figure3(paths: Sequence[str], setting: str, metric: Optional[str] = None, select: Optional[str] = None):
  """(figure, CSV rows): score vs size per value of `setting`, or vs `setting` at one size."""
  summary = summaries.summarize(summaries.collect(paths, select)[0])
  metric = choose_metric(summary, metric)
  having = [e for e in summary if setting in e["settings"]]
  if not having:
    raise SweepError(f"--setting {setting}: no run has it (they have "
                     f"{', '.join(dict.fromkeys(k for e in summary for k in e['settings']))})")
  if len({e["params"] for e in having}) > 1:
    lines, ticks = series(summary, metric, "params", setting)
    fig = draw(lines, ticks, PARAMS, _y_label(metric), f"score vs size by {setting}", True)
  else:
    lines, ticks = series(summary, metric, setting, None)
    xs = [x for s in lines if s.xs for x in s.xs]
    log_x = ticks is None and min(xs) > 0 and max(xs) >= 10 * min(xs)
    fig = draw(lines, ticks, setting, _y_label(metric), f"score vs {setting}", log_x)
  return fig, _rows(lines, ticks)


def _run_folders(paths: Sequence[str]) -> list:
  """(label, folder, select) of every run of the sweep roots and of the other folders given."""
  out = []
  for path in paths:
    manifest = sweep_plan.read_manifest(path) if os.path.isdir(path) else None
    out += ([(e["name"], e["dir"], e.get("select", summaries.SCORE)) for e in manifest["runs"]]
            if manifest else [(os.path.basename(os.path.normpath(path)), path, summaries.SCORE)])
  return out


def curves(paths: Sequence[str], select: Optional[str] = None):
  """(figure, CSV rows): per run, train loss and the selection metric vs step."""
  plt = _pyplot()
  fig, (loss_ax, eval_ax) = plt.subplots(1, 2, figsize=(11, 4.4))
  rows, folders = [], _run_folders(paths)
  colors = plt.cm.viridis(np.linspace(0, 0.9, max(len(folders), 1)))  # a run has one colour in both
  for (label, folder, chosen), color in zip(folders, colors):
    path = os.path.join(folder, "metrics.jsonl")
    if not os.path.isfile(path):
      continue
    with open(path, encoding="utf-8") as f:
      lines = [json.loads(line) for line in f if line.strip()]
    loss = [(r["step"], r.get("train/cross_ent_per_token", r.get("train/loss"))) for r in lines
            if "train/loss" in r]
    score = [(r["step"], summaries.selection(r, select or chosen)) for r in lines]
    score = [(step, v) for step, v in score if v is not None]
    for ax, points, name in ((loss_ax, loss, "train loss"), (eval_ax, score, select or chosen)):
      if points:
        ax.plot(*zip(*points), label=label, color=color, marker="." if ax is eval_ax else None)
        rows += [[label, name, step, value] for step, value in points]
  if not rows:
    raise SweepError(f"no run in {', '.join(paths)} has written metrics yet: nothing to plot")
  loss_ax.set(xlabel="step", ylabel="train loss (cross-entropy per token)", title="training")
  eval_ax.set(xlabel="step", ylabel=select or "eval/score", title="evaluation")
  for ax in (loss_ax, eval_ax):
    ax.grid(alpha=0.3)
  eval_ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
  return fig, rows


def neighbor_table(prompt: str, checkpoint: str, top_k: int = 5, labels: Sequence[str] = (),
                   vocab: Optional[str] = None):
  """(figure, CSV rows): each prompt position's nearest pieces and their cosine similarities;
  pieces of the labels in bold."""
  from prompt_tuning.analysis import neighbors
  from prompt_tuning.model import prompts
  from prompt_tuning.checkpoints import prompt_io
  try:
    report = neighbors.report(prompt_io.load_prompt(prompt), neighbors.input_embedding(checkpoint),
                              top_k, vocab, labels)
  except (ValueError, OSError) as err:
    raise SweepError(" ".join(str(err).split())) from None
  label_pieces = {neighbors.token_name(i, vocab) for l in labels for i in prompts.encode_text(vocab, l)}
  cells = [p["neighbors"] for p in report["positions"]]
  sims = np.array([[s for _, s in row] for row in cells])
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(1.5 * sims.shape[1] + 1.5, 0.3 * len(cells) + 1.2))
  image = ax.imshow(sims, cmap="viridis", aspect="auto", vmin=min(0.0, sims.min()), vmax=1.0)
  for p, row in enumerate(cells):
    for r, (piece, sim) in enumerate(row):
      ax.text(r, p, f"{piece} {sim:.2f}", ha="center", va="center", fontsize=7,
              color="black" if sim > 0.6 else "white", fontweight="bold" if piece in label_pieces else "normal")
  ax.set_xticks(range(sims.shape[1]), [f"#{r + 1}" for r in range(sims.shape[1])])
  ax.set_yticks(range(len(cells)))
  ax.set(xlabel="nearest vocabulary pieces", ylabel="prompt position", title=os.path.basename(prompt))
  fig.colorbar(image, ax=ax, label="cosine similarity")
  return fig, [[p, r + 1, piece, sim] for p, row in enumerate(cells) for r, (piece, sim) in enumerate(row)]


# ----------------------------------------------------------------------------- command line


def _parser(prog: str) -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=__doc__.split("\n\n", 1)[1])
  kinds = parser.add_subparsers(dest="kind", required=True)
  for kind in ("figure1", "figure3", "curves"):
    sub = kinds.add_parser(kind)
    sub.add_argument("paths", nargs="+", help="sweep roots and MODEL_DIRs")
    sub.add_argument("--select", default=None, help="metric or task that picks each run's best evaluation")
    sub.add_argument("--out", default=None, help="output prefix (default <first path>/plots/<kind>)")
    if kind != "curves":
      sub.add_argument("--metric", default=None, help="super_glue or <task>/<metric>")
  kinds.choices["figure1"].add_argument("--line", default="method", help="setting with one line per value")
  kinds.choices["figure3"].add_argument("--setting", required=True, help="the ablated setting, e.g. PROMPT_LENGTH")
  sub = kinds.add_parser("neighbors")
  sub.add_argument("prompt", help="prompt .npy or PEFT adapter folder")
  sub.add_argument("checkpoint", help="the frozen model's checkpoint (T5X or Hugging Face folder)")
  sub.add_argument("--top_k", type=int, default=5)
  sub.add_argument("--labels", default="", help="comma-separated labels whose pieces are shown in bold")
  sub.add_argument("--vocab", default=None, help="SentencePiece model (default: the T5 vocabulary)")
  sub.add_argument("--out", default=None, help="output prefix (default <prompt's folder>/plots/neighbors)")
  return parser


def main(argv: Sequence[str], prog: str) -> int:
  """`plot KIND ...`: writes PNG, SVG and CSV and prints their paths; errors raise SweepError."""
  args = _parser(prog).parse_args(argv)
  if args.kind == "neighbors":
    if args.top_k < 1:
      raise SweepError(f"--top_k must be at least 1, not {args.top_k}")
    fig, rows = neighbor_table(args.prompt, args.checkpoint, args.top_k,
                               [l for l in args.labels.split(",") if l], args.vocab)
    header, first = ["position", "rank", "piece", "similarity"], os.path.dirname(os.path.abspath(args.prompt))
  else:
    if args.kind == "curves":
      fig, rows = curves(args.paths, args.select)
      header = ["run", "series", "step", "value"]
    else:
      extra = {"line": args.line} if args.kind == "figure1" else {"setting": args.setting}
      fig, rows = (figure1 if args.kind == "figure1" else figure3)(args.paths, metric=args.metric,
                                                                  select=args.select, **extra)
      header = SCORE_HEADER
    first = args.paths[0] if os.path.isdir(args.paths[0]) else os.path.dirname(args.paths[0])
  for path in save(fig, header, rows, args.out or os.path.join(first, "plots", args.kind)):
    print(path)
  return 0
