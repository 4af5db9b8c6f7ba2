"""tf.data preprocessors: raw TFDS examples -> T5 text-to-text strings.

The formats reproduce T5's (`glue`-style `prefix key: value ...` with sorted
feature keys, its ReCoRD, WSC and SQuAD formats), which is what the paper
used with the task prefix removed. Each text preprocessor keeps the fields
that evaluation needs (`label`, `idx...`, `answers`) next to `inputs` and
`targets`; seqio drops them before the model sees a batch.
"""
from typing import Mapping, Optional, Sequence

import seqio
import tensorflow as tf

UNKNOWN_LABEL = "<unk>"  # Target for unlabelled (test) examples, as in T5.


def _label_text(label: tf.Tensor, label_classes: Sequence[str]) -> tf.Tensor:
  names = tf.constant(list(label_classes))
  return tf.where(label < 0, UNKNOWN_LABEL, tf.gather(names, tf.maximum(label, 0)))


def _join_features(x, prefix: str, feature_names: Optional[Sequence[str]]) -> tf.Tensor:
  """`prefix k1: v1 k2: v2 ...`, keys sorted unless given explicitly."""
  keys = feature_names or sorted(k for k in x if k not in ("label", "idx"))
  parts = [prefix]
  for key in keys:
    parts += [f"{key}:", x[key]]
  return tf.strings.join(parts, separator=" ")


def _eval_fields(x) -> dict:
  """Ids and label carried through for the postprocessors."""
  fields = {"label": x["label"]} if "label" in x else {}
  if isinstance(x.get("idx"), Mapping):  # MultiRC, ReCoRD: nested ids.
    fields.update({f"idx/{k}": v for k, v in x["idx"].items()})
  elif "idx" in x:
    fields["idx"] = x["idx"]
  return fields


@seqio.map_over_dataset
def glue_text(x, prefix: str, label_classes: Sequence[str],
              feature_names: Optional[Sequence[str]] = None):
  """T5's GLUE/SuperGLUE classification format; `label` -> verbalizer."""
  return {"inputs": _join_features(x, prefix, feature_names),
          "targets": _label_text(x["label"], label_classes), **_eval_fields(x)}


def _remove_markup(text: tf.Tensor) -> tf.Tensor:
  text = tf.strings.regex_replace(text, "<br>", " ")
  return tf.strings.regex_replace(text, "<(/)?b>", "")


MULTIRC_FEATURES = ("question", "answer", "paragraph")


@seqio.map_over_dataset
def multirc_text(x):
  """MultiRC: one example per answer option; HTML removed (from all of it)."""
  return {"inputs": _remove_markup(_join_features(x, "multirc", MULTIRC_FEATURES)),
          "targets": _label_text(x["label"], ("False", "True")), **_eval_fields(x)}


@seqio.map_over_dataset
def stsb_text(x):
  """STS-B: the 0-5 similarity rounded to the nearest 0.2, as text."""
  return {"inputs": _join_features(x, "stsb", ("sentence1", "sentence2")),
          "targets": tf.strings.as_string(tf.round(x["label"] * 5) / 5, precision=1),
          **_eval_fields(x)}


def _record_passage(passage: tf.Tensor) -> tf.Tensor:
  """ReCoRD passages list CNN highlights after `@highlight`: make sentences."""
  passage = tf.strings.regex_replace(passage, r"(\.|\?|\!|\"|\')\n@highlight\n", r"\1 ")
  return tf.strings.regex_replace(passage, r"\n@highlight\n", ". ")


def record_text(dataset: tf.data.Dataset) -> tf.data.Dataset:
  """ReCoRD: one example per gold answer (one `<unk>` example if none)."""

  def per_answer(x):
    answers = x["answers"]
    has_answers = tf.size(answers) > 0
    targets = tf.cond(has_answers, lambda: answers, lambda: tf.constant([UNKNOWN_LABEL]))
    count = tf.size(targets)
    inputs = tf.strings.join([
        "record query:", x["query"], "entities:",
        tf.strings.reduce_join(x["entities"], separator=", "),
        "passage:", _record_passage(x["passage"])], separator=" ")
    repeat = lambda t: tf.repeat(tf.expand_dims(t, 0), count, axis=0)
    return tf.data.Dataset.from_tensor_slices({
        "inputs": repeat(inputs), "targets": targets, "answers": repeat(answers),
        **{k: repeat(v) for k, v in _eval_fields(x).items()}})

  return dataset.flat_map(per_answer)


def _mark_pronoun(text: tf.Tensor, index: tf.Tensor, pronoun: tf.Tensor) -> tf.Tensor:
  """Wraps the word at `index` (split on spaces) in asterisks: `*it*`.

  Punctuation glued after the pronoun (`him,"`) stays outside the marks.
  """
  words = tf.strings.split(text, sep=" ")
  word = words[index]
  size = tf.strings.length(pronoun)
  starts_with = tf.equal(tf.strings.substr(word, 0, size), pronoun)
  # Both branches of `where` run: clamp so a word shorter than the span cannot fail.
  rest_start = tf.minimum(size, tf.strings.length(word))
  rest = tf.where(starts_with, tf.strings.substr(word, rest_start, tf.strings.length(word)), "")
  marked = tf.strings.join(["*", pronoun, "*", rest])
  words = tf.concat([words[:index], [marked], words[index + 1:]], axis=0)
  return tf.strings.reduce_join(words, separator=" ")


@seqio.map_over_dataset
def wsc_text(x):
  """WSC as T5's `wsc_simple`: name the referent of the marked pronoun."""
  marked = _mark_pronoun(x["text"], x["span2_index"], x["span2_text"])
  return {"inputs": tf.strings.join(["wsc:", marked], separator=" "),
          "targets": x["span1_text"], **_eval_fields(x)}


def _regex_literal(text: tf.Tensor) -> tf.Tensor:
  """`text` with RE2's special characters escaped, to match it literally."""
  return tf.strings.regex_replace(text, r"([\\.^$|?*+()\[\]{}])", r"\\\1")


@seqio.map_over_dataset
def dpr_text(x):
  """Definite Pronoun Resolution in WSC's format, as T5's `dpr_v001_simple`.

  `wsc: ` + the sentence with the pronoun marked `*he*` at its first
  occurrence that follows a space and precedes a space, period or comma
  (case-sensitive, so a sentence-initial pronoun stays unmarked); the target
  is the correct candidate's text.
  """
  pattern = tf.strings.join([" (", _regex_literal(x["pronoun"]), r")( |\.|,)"])
  marked = tf.strings.regex_replace(x["sentence"], pattern, r" *\1*\2", replace_global=False)
  return {"inputs": tf.strings.join(["wsc:", marked], separator=" "),
          "targets": x["candidates"][x["label"]]}


def pad_punctuation(text: tf.Tensor) -> tf.Tensor:
  """T5's SQuAD tokenization: spaces around punctuation, single spaces."""
  text = tf.strings.regex_replace(text, r"([^_\s\p{N}\p{L}\p{M}])", r" \1 ")
  return tf.strings.strip(tf.strings.regex_replace(text, r"\s+", " "))


@seqio.map_over_dataset
def qa_text(x):
  """SQuAD and MRQA: `question: q context: c` -> first answer.

  SQuAD stores answers as {"text": [...], ...}, MRQA as a list of strings.
  """
  answers = x["answers"]["text"] if isinstance(x["answers"], Mapping) else x["answers"]
  answers = pad_punctuation(answers)
  inputs = tf.strings.join(["question:", pad_punctuation(x["question"]),
                            "context:", pad_punctuation(x["context"])], separator=" ")
  return {"inputs": inputs, "targets": answers[0], "answers": answers}


@seqio.map_over_dataset
def drop_task_prefix(x):
  """`rte hypothesis: ...` -> `hypothesis: ...` (the paper's taskless format)."""
  return dict(x, inputs=tf.strings.regex_replace(x["inputs"], r"^\S*\s", "",
                                                 replace_global=False))


def prepend_task_index(dataset: tf.data.Dataset, output_features,
                       index: int) -> tf.data.Dataset:
  """Starts the token ids of `inputs` with sentinel `<extra_id_{index}>`.

  Runs after tokenization, so the index is one real vocabulary id (it
  counts toward `inputs_length`); `inputs_pretokenized` keeps the text.
  """
  vocabulary = output_features["inputs"].vocabulary
  sentinel = vocabulary.vocab_size - 1 - index

  @seqio.map_over_dataset
  def prepend(x):
    ids = x["inputs"]
    return dict(x, inputs=tf.concat([tf.constant([sentinel], ids.dtype), ids], axis=0))

  return prepend(dataset)


def prepend_target_sentinel(dataset: tf.data.Dataset, output_features) -> tf.data.Dataset:
  """Starts the token ids of `targets` with `<extra_id_0>`, the first id of every span-corruption
  target in pre-training; `targets_pretokenized` keeps the plain text."""
  sentinel = output_features["targets"].vocabulary.vocab_size - 1

  @seqio.map_over_dataset
  def prepend(x):
    ids = x["targets"]
    return dict(x, targets=tf.concat([tf.constant([sentinel], ids.dtype), ids], axis=0))

  return prepend(dataset)


def expand_for_ranking(dataset: tf.data.Dataset,
                       label_classes: Sequence[str]) -> tf.data.Dataset:
  """One example per candidate label, for rank classification.

  Adds `rank_id` (position of the source example, stable for unshuffled
  evaluation), `rank_label` (candidate index) and `rank_correct`.
  """
  labels = tf.constant(list(label_classes))
  count = len(label_classes)

  def candidates(position, x):
    repeat = lambda t: tf.repeat(tf.expand_dims(t, 0), count, axis=0)
    expanded = {k: repeat(v) for k, v in x.items() if k != "targets"}
    expanded.update(targets=labels, rank_id=repeat(position),
                    rank_label=tf.range(count, dtype=tf.int64),
                    rank_correct=tf.equal(labels, x["targets"]))
    return tf.data.Dataset.from_tensor_slices(expanded)

  return dataset.enumerate().flat_map(candidates)
