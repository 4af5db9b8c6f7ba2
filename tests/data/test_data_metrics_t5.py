"""The registered tasks' postprocessors and metrics against the `t5` package's own.

The same (targets, predictions), drawn at random with fixed seeds plus edge
cases (invalid labels, near-misses of a label, empty and constant outputs,
ties, repeated ReCoRD queries, unicode, punctuation and articles), go through
T5's postprocessors and metric functions (t5 0.9.4, with the scikit-learn
and SciPy they call) and through ours; every value must agree to 1e-9.
"""
import functools
import warnings

import numpy as np
import pytest
import seqio
import tensorflow_datasets as tfds

from prompt_tuning.data import glue
from prompt_tuning.data import metrics
from prompt_tuning.data import qa
from prompt_tuning.data import rank_classification
from prompt_tuning.data import registry
from prompt_tuning.data import super_glue
from prompt_tuning.data import vocab

_MISSING = ("the reference `t5` package is not installed: run "
            "`pip install --no-deps t5==0.9.4` (its other imports are in the test extra)")
t5_metrics = pytest.importorskip("t5.evaluation.metrics", reason=_MISSING)
t5_post = pytest.importorskip("t5.data.postprocessors", reason=_MISSING)
t5_glue = pytest.importorskip("t5.data.glue_utils", reason=_MISSING)
t5_qa = pytest.importorskip("t5.evaluation.qa_utils", reason=_MISSING)

pytestmark = pytest.mark.filterwarnings("ignore")  # scikit-learn/SciPy warn on undefined scores.

SEEDS = range(12)
# Outputs a model may decode that are not labels, as written or near one.
JUNK = ("", " ", "maybe", "<unk>", "True.", "entailment ", " entailment", "Entailment",
        "not entailment", "choice 1", "positive\n", "négatif", "是", "1", "-1")
# MultiRC's F1 over all answers: T5 calls it `f1`, we (and the paper) `f1a`.
MULTIRC_KEYS = {"f1": "f1a"}


def _builder_configs(builder):
  return {c.name: c for c in builder.builder_configs.values()}


SUPER_GLUE_CONFIGS = _builder_configs(tfds.text.super_glue.SuperGlue)
GLUE_CONFIGS = _builder_configs(tfds.text.glue.Glue)
# Our task -> (its T5 builder config, T5's metric functions). T5 registers AX-b
# and AX-g without metrics: AX-b is scored as T5 scores CoLA (the SuperGLUE
# leaderboard's Matthews correlation), AX-g by accuracy.
CLASSIFICATION = {
    **{super_glue.base_name(name): (SUPER_GLUE_CONFIGS[name], t5_glue.get_super_glue_metric(name))
       for name in ("boolq", "cb", "copa", "rte", "wic")},
    super_glue.base_name("axb"): (SUPER_GLUE_CONFIGS["axb"], t5_glue.get_glue_metric("cola")),
    super_glue.base_name("axg"): (SUPER_GLUE_CONFIGS["axg"], [t5_metrics.accuracy]),
    **{glue.base_name(name): (GLUE_CONFIGS[name], t5_glue.get_glue_metric(name))
       for name in glue.CLASSIFICATION},
}


def _task(name):
  return seqio.get_mixture_or_task(name)


def _assert_same(ours: dict, theirs: dict, renamed=None):
  """The same metrics (T5's `key` is ours `renamed[key]`), equal to 1e-9; NaN equals NaN."""
  renamed = renamed or {}
  assert set(ours) == {renamed.get(key, key) for key in theirs}, (ours, theirs)
  for key, value in theirs.items():
    assert ours[renamed.get(key, key)] == pytest.approx(float(value), rel=1e-9, abs=1e-9,
                                                        nan_ok=True), (key, ours, theirs)


def _ours(task, targets, predictions, examples):
  """The task's postprocessor (targets as bytes, as the evaluator passes them) and metrics."""
  post = task.postprocess_fn
  targets = [post(t.encode(), example=e, is_target=True) for t, e in zip(targets, examples)]
  predictions = [post(p, example=e) for p, e in zip(predictions, examples)]
  results = {}
  for fn in task.predict_metric_fns:
    results.update(fn(targets, predictions))
  return results


def _theirs(post, metric_fns, targets, predictions, examples):
  """T5's: seqio hands its postprocessor text for targets and predictions alike."""
  targets = [post(t, example=e, is_target=True) for t, e in zip(targets, examples)]
  predictions = [post(p, example=e, is_target=False) for p, e in zip(predictions, examples)]
  results = {}
  for fn in metric_fns:
    results.update(fn(targets, predictions))
  return results


def _draw(rng, pool, n, weights=None):
  return [pool[i] for i in rng.choice(len(pool), size=n, p=weights)]


def _label_cases(labels, rng):
  """Random (targets, predictions) as text; none, a tenth or half of the outputs are no label."""
  n = int(rng.integers(1, 60))
  targets = _draw(rng, labels, n)
  share_junk = rng.choice([0.0, 0.1, 0.5])
  pool = list(labels) + list(JUNK)
  weights = [(1 - share_junk) / len(labels)] * len(labels) + [share_junk / len(JUNK)] * len(JUNK)
  return targets, _draw(rng, pool, n, weights)


def _label_edge_cases(labels):
  targets = [labels[i % len(labels)] for i in range(7)]
  return [
      (targets, targets),  # all right
      (targets, ["maybe"] * 7),  # all invalid
      (targets, [labels[0]] * 7),  # constant
      (targets, [labels[-1]] + ["maybe"] * 6),
      ([labels[0]] * 7, [labels[0]] * 6 + ["maybe"]),  # one class in the targets
      ([labels[0]] * 7, [labels[0]] * 7),
      (targets, [" " + t for t in targets]),  # near-misses of every label
      (targets, [t.upper() for t in targets]),
      ([labels[0]], ["<unk>"]),
      (targets[:4], ["", labels[0], "", labels[-1]]),
  ]


@pytest.mark.parametrize("task_name", sorted(CLASSIFICATION))
def test_classification_tasks_score_as_t5(task_name):
  config, t5_fns = CLASSIFICATION[task_name]
  labels = list(config.label_classes)
  t5_postprocess = t5_glue.get_glue_postprocess_fn(config)
  cases = [_label_cases(labels, np.random.default_rng(seed)) for seed in SEEDS]
  for targets, predictions in cases + _label_edge_cases(labels):
    examples = [{} for _ in targets]
    for variant in registry.VARIANTS:  # Outputs with a sentinel: see the next test.
      ours = _ours(_task(registry.variant_name(task_name, variant)), targets, predictions, examples)
      _assert_same(ours, _theirs(t5_postprocess, t5_fns, targets, predictions, examples))


SENTINEL_OUTPUTS = ("entailment", "not_entailment", "<extra_id_0>", "<extra_id_0>entailment",
                    "<extra_id_0> entailment", "<extra_id_0>  not_entailment ",
                    " <extra_id_0> entailment", "<extra_id_1> entailment",
                    "<extra_id_0><extra_id_0> entailment")


@pytest.mark.parametrize("text", JUNK + SENTINEL_OUTPUTS)
def test_sentinel_variant_reads_predictions_as_seqio(text):
  """seqio's `add_task_with_sentinels` over T5's RTE postprocessor is the reference."""
  config = SUPER_GLUE_CONFIGS["rte"]
  name = "t5_reference_rte"
  seqio.TaskRegistry.remove(name)
  seqio.TaskRegistry.remove(name + "_1_sentinel")
  feature = seqio.Feature(vocab.default_vocabulary())
  seqio.TaskRegistry.add(
      name, source=seqio.FunctionDataSource(lambda split, shuffle_files, seed=None: None,
                                            splits=["validation"]),
      preprocessors=[seqio.preprocessors.append_eos_after_trim],
      output_features={"inputs": feature, "targets": feature},
      postprocess_fn=t5_glue.get_glue_postprocess_fn(config), metric_fns=[])
  try:
    seqio.experimental.add_task_with_sentinels(name, num_sentinels=1)
    reference = seqio.get_mixture_or_task(name + "_1_sentinel").postprocess_fn
    ours = _task(registry.variant_name(super_glue.base_name("rte"), registry.SENTINEL))
    ours = ours.postprocess_fn
    assert ours(text, example={}) == reference(text, example={}, is_target=False)
    assert ours(b"entailment", example={}, is_target=True) == reference(
        "entailment", example={}, is_target=True)
  finally:
    seqio.TaskRegistry.remove(name)
    seqio.TaskRegistry.remove(name + "_1_sentinel")


def test_matthews_counts_an_invalid_output_as_its_own_class():
  # Classes -1, 0, 1: true counts (0, 2, 2), predicted (1, 2, 1), 3 of 4 right:
  # (3*4 - 6) / sqrt((16 - 6) * (16 - 8)). Reading -1 as the wrong label gave 2 / sqrt(12).
  targets, predictions = [1, 1, 0, 0], [1, -1, 0, 0]
  expected = 100 * 6 / np.sqrt(80)
  t5_cola = t5_glue.get_glue_metric("cola")[0]
  assert metrics.matthews_corrcoef(targets, predictions) == {
      "matthews_corrcoef": pytest.approx(expected)}
  assert t5_cola(targets, predictions) == {"matthews_corrcoef": pytest.approx(expected)}


STSB_PREDICTIONS = ("0.0", "5.0", "2.4", "3.8", "1", " 2.6 ", "4.2\n", "1e0", "three", "", "-",
                    "nan", "inf", "٣")


def _stsb_cases():
  cases = []
  for seed in SEEDS:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 60))
    targets = ["%.1f" % (round(x * 5) / 5) for x in rng.uniform(0, 5, n)]
    weights = rng.dirichlet(np.ones(len(STSB_PREDICTIONS)) * (0.3 if seed % 2 else 3))
    cases.append((targets, _draw(rng, STSB_PREDICTIONS, n, weights)))
  targets = ["0.0", "2.4", "3.8", "5.0", "1.2"]
  cases += [
      (targets, ["3.0"] * 5),  # constant prediction: no correlation (NaN)
      (targets, ["three"] * 5),  # all unreadable: constant -1
      (["2.0"] * 5, ["1.0", "2.0", "3.0", "4.0", "5.0"]),  # constant targets
      (targets, ["1.0", "1.0", "2.0", "2.0", "5.0"]),  # ties
      (targets, ["1.0", "nan", "2.0", "2.0", "5.0"]),
      (targets, ["1.0", "inf", "2.0", "2.0", "5.0"]),
      (targets[:2], ["1.0", "4.0"]),
      (targets[:2], ["4.0", "1.0"]),
  ]
  return cases


@pytest.mark.parametrize("targets,predictions", _stsb_cases())
def test_stsb_scores_as_t5(targets, predictions):
  t5_fns = t5_glue.get_glue_metric("stsb")
  examples = [{} for _ in targets]
  ours = _ours(_task(glue.base_name("stsb")), targets, predictions, examples)
  _assert_same(ours, _theirs(t5_post.string_to_float, t5_fns, targets, predictions, examples))


def test_stsb_constant_prediction_is_nan_as_in_t5():
  result = metrics.pearson_and_spearman([0.0, 2.4, 3.8], [3.0, 3.0, 3.0])
  assert np.isnan(result["pearson_corrcoef"]) and np.isnan(result["spearman_corrcoef"])
  assert np.isnan(t5_metrics.pearson_corrcoef([0.0, 2.4, 3.8], [3.0, 3.0, 3.0])["pearson_corrcoef"])


def _multirc_examples(rng, n):
  """Answers of a few questions; question ids repeat across paragraphs as T5 allows."""
  return [{"idx/paragraph": np.int32(rng.integers(0, 3)),
           "idx/question": np.int32(rng.integers(0, 6)), "idx/answer": np.int32(i)}
          for i in range(n)]


@pytest.mark.parametrize("seed", SEEDS)
def test_multirc_scores_as_t5(seed):
  rng = np.random.default_rng(seed)
  n = int(rng.integers(1, 40))
  examples = _multirc_examples(rng, n)
  targets = _draw(rng, ["False", "True"], n)
  outputs = _draw(rng, ["False", "True", "maybe", "", "true"], n, [0.4, 0.4, 0.1, 0.05, 0.05])
  cases = [(targets, outputs), (targets, targets), (targets, ["maybe"] * n),
           (targets, ["False"] * n)]
  t5_fns = t5_glue.get_super_glue_metric("multirc")
  for targets, predictions in cases:
    for variant in registry.VARIANTS:
      task = _task(registry.variant_name(super_glue.base_name("multirc"), variant))
      ours = _ours(task, targets, predictions, examples)
      _assert_same(ours, _theirs(t5_post.multirc, t5_fns, targets, predictions, examples),
                   MULTIRC_KEYS)


ENTITIES = ("France", "French Republic", "the Louvre", "Paris", "Île-de-France", "U.S.",
            "Mr. Smith's", "an apple", "Müller", "北京")


def _record_cases():
  cases = []
  for seed in SEEDS:
    rng = np.random.default_rng(seed)
    examples, predictions = [], []
    for query in range(int(rng.integers(1, 12))):
      answers = [a.encode() for a in _draw(rng, ENTITIES, int(rng.integers(1, 3)))]
      for _ in range(len(answers)):  # One example per gold answer, as the task makes them.
        examples.append({"answers": answers, "idx/passage": np.int32(query // 3),
                         "idx/query": np.int32(query)})
        guess = _draw(rng, ENTITIES, 1)[0]
        predictions.append(rng.choice([guess, guess.lower(), guess + ".", "The " + guess, ""]))
    cases.append((examples, predictions))
  # A repeated query whose later copies are predicted differently: the first counts.
  repeated = [{"answers": [b"France"], "idx/passage": np.int32(0), "idx/query": np.int32(0)}] * 3
  cases.append((repeated, ["Spain", "France", "France"]))
  cases.append((repeated, ["France", "Spain", "Spain"]))
  return cases


@pytest.mark.parametrize("examples,predictions", _record_cases())
def test_record_scores_as_t5(examples, predictions):
  targets = [e["answers"][0].decode() for e in examples]
  t5_fns = t5_glue.get_super_glue_metric("record")
  for variant in registry.VARIANTS:
    task = _task(registry.variant_name(super_glue.base_name("record"), variant))
    ours = _ours(task, targets, predictions, examples)
    _assert_same(ours, _theirs(t5_post.record, t5_fns, targets, predictions, examples))


WSC_WORDS = ("the", "a", "his", "Bob", "bob", "Bob's", "city", "councilmen", "hat", "fuzzy",
             "bunny", "", "Their", "dog's")


@pytest.mark.parametrize("seed", SEEDS)
def test_wsc_scores_as_t5(seed):
  rng = np.random.default_rng(seed)
  n = int(rng.integers(1, 40))

  def phrase():
    return " ".join(_draw(rng, WSC_WORDS, int(rng.integers(0, 4))))

  referents = [phrase() or "Bob" for _ in range(n)]
  examples = [{"targets_pretokenized": r.encode(), "label": np.int64(rng.integers(0, 2))}
              for r in referents]
  predictions = [rng.choice([r, r.upper(), " " + r + " ", phrase()]) for r in referents]
  targets = [e["targets_pretokenized"].decode() for e in examples]
  ours = _ours(_task(super_glue.base_name("wsc")), targets, predictions, examples)
  # T5's eval task `super_glue_wsc_v102_simple_eval`: `wsc_simple`, then accuracy.
  _assert_same(ours, _theirs(t5_post.wsc_simple, [t5_metrics.accuracy], targets, predictions,
                             examples))


SQUAD_TEXTS = ("Denver Broncos", "the Denver Broncos", "Broncos!", "An apple a day", "theater",
               "The the the", "a", "", "...", "  spaced\tout\nanswer ", "Café crème", "naïve",
               "Straße", "ÖSTERREICH", "“quoted”", "‘single’", "l'été", "U.S.A.", "3.14",
               "1,000,000", "co-operate", "50%", "北京大学", "an_apple", "A-", "the-end")


def test_squad_normalization_is_t5s():
  for text in SQUAD_TEXTS:
    assert metrics.normalize_answer(text) == t5_qa.normalize_squad(text), text


def _squad_cases():
  cases = []
  for seed in SEEDS:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 30))
    answers = [_draw(rng, SQUAD_TEXTS, int(rng.integers(1, 4))) for _ in range(n)]
    predictions = []
    for gold in answers:
      words = " ".join(_draw(rng, SQUAD_TEXTS, int(rng.integers(0, 3))))
      predictions.append(rng.choice([gold[0], gold[-1].upper(), words, gold[0] + " " + words]))
    cases.append((answers, predictions))
  cases.append(([["Broncos"], ["the"]], ["", "a"]))  # empty after normalization
  return cases


@pytest.mark.parametrize("answers,predictions", _squad_cases())
def test_squad_and_mrqa_score_as_t5(answers, predictions):
  examples = [{"answers": [a.encode() for a in gold]} for gold in answers]
  targets = [gold[0] for gold in answers]
  theirs = _theirs(t5_post.qa, [t5_metrics.squad], targets, predictions, examples)
  assert metrics.squad_em_f1([list(a) for a in answers], predictions) == pytest.approx(
      {k: float(v) for k, v in theirs.items()}, rel=1e-9, abs=1e-9)
  for name in (qa.SQUAD, qa.mrqa_name("drop")):  # F1 only, as the paper reports.
    ours = _ours(_task(name), targets, predictions, examples)
    assert ours == pytest.approx({"f1": float(theirs["f1"])}, rel=1e-9, abs=1e-9)


# --- Rank classification: T5's `rank_classification` metric over the same scores. ---


def _rank_case(rng, num_classes, n, unlabelled=True):
  """Candidates per example in label order, gold labels (-1: none is correct) and scores.

  The scores take few distinct float32 values, so candidates often tie.
  """
  gold = rng.integers(-1 if unlabelled else 0, num_classes, n)
  gold[:2] = (0, 1)  # Both binary classes occur, as T5's AUC needs.
  examples = [{"rank_id": np.int64(i), "rank_label": np.int64(label),
               "rank_correct": np.bool_(label == gold[i])}
              for i in range(n) for label in range(num_classes)]
  scores = list(rng.integers(-4, 1, len(examples)).astype(np.float32) * np.float32(0.25))
  return examples, list(gold), scores


def _t5_rank_targets(examples):
  return [((int(e["rank_id"]), int(e["rank_label"])), bool(e["rank_correct"]), 1.0, 1)
          for e in examples]


def _first_best(scores, num_classes):
  """T5's choice per example: the first of the best-scoring candidates."""
  return list(np.asarray(scores).reshape(-1, num_classes).argmax(-1))


def _ranked_ours(task_name, examples, scores):
  task = _task(task_name + rank_classification.SUFFIX)
  targets = [task.postprocess_fn(None, example=e, is_target=True) for e in examples]
  results = {}
  for fn in task.score_metric_fns:
    results.update(fn(targets, scores))
  return results


@pytest.mark.parametrize("task_name", sorted(CLASSIFICATION))
def test_rank_classification_scores_as_t5(task_name):
  config, t5_fns = CLASSIFICATION[task_name]
  num_classes = len(config.label_classes)
  for seed in SEEDS:
    rng = np.random.default_rng(seed)
    examples, gold, scores = _rank_case(rng, num_classes, int(rng.integers(4, 30)))
    ours = _ranked_ours(task_name, examples, scores)
    theirs = t5_metrics.rank_classification(_t5_rank_targets(examples), scores,
                                            num_classes=num_classes)
    if set(ours) - set(theirs):  # Matthews correlation: T5's CoLA metric of T5's choices.
      for fn in t5_fns:
        theirs.update(fn(gold, _first_best(scores, num_classes)))
    _assert_same(ours, {k: v for k, v in theirs.items() if k in ours})


@pytest.mark.parametrize("seed", SEEDS)
def test_multirc_rank_classification_scores_as_t5(seed):
  rng = np.random.default_rng(seed)
  n = int(rng.integers(4, 30))
  examples, gold, scores = _rank_case(rng, 2, n, unlabelled=False)
  questions = _multirc_examples(rng, n)
  for e in examples:
    e.update(questions[int(e["rank_id"])])
  ours = _ranked_ours(super_glue.base_name("multirc"), examples, scores)
  targets = [{"value": g, "group": q["idx/question"]} for g, q in zip(gold, questions)]
  theirs = {}
  for fn in t5_glue.get_super_glue_metric("multirc"):
    theirs.update(fn(targets, [{"value": c} for c in _first_best(scores, 2)]))
  _assert_same(ours, theirs, MULTIRC_KEYS)


def test_record_keeps_the_first_prediction_of_a_query():
  target = {"value": ["France"], "group": (0, 0)}
  dedup = functools.partial(metrics.record_em_f1, [target, target])
  assert dedup([{"value": "France"}, {"value": "Spain"}]) == {"em": 100.0, "f1": 100.0}
  assert dedup([{"value": "Spain"}, {"value": "France"}]) == {"em": 0.0, "f1": 0.0}
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    assert t5_metrics.deduplicate_metric(t5_metrics.squad)(
        [target, target], [{"value": "Spain"}, {"value": "France"}]) == {"em": 0.0, "f1": 0.0}


def test_where_t5_raises_a_score_is_given():
  """The README's stated differences: T5 has no value for these, ours are fixed."""
  with pytest.raises(ValueError):
    t5_metrics.squad([[]], ["Paris"])
  assert metrics.squad_em_f1([[]], [""]) == {"em": 100.0, "f1": 0.0}
  assert metrics.squad_em_f1([[]], ["Paris"]) == {"em": 0.0, "f1": 0.0}
  with pytest.raises(ValueError):
    t5_metrics.f1_score_with_invalid([1, -1, 0], [1, 1, 0])
  assert metrics.f1_with_invalid([1, -1, 0], [1, 1, 0]) == {"f1": pytest.approx(100 * 2 / 3)}
  with pytest.raises(ValueError):
    t5_metrics.pearson_corrcoef([1.0], [2.0])
  assert all(np.isnan(v) for v in metrics.pearson_and_spearman([1.0], [2.0]).values())
