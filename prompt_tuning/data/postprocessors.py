"""Turn decoded text (and targets) into what the metric functions compare.

All follow seqio's `postprocess_fn(output, example=None, is_target=False)`:
seqio calls them on each decoded prediction and on each `targets_pretokenized`
string, passing the preprocessed example so targets can carry ids/answers.
Pure Python: no TensorFlow.
"""
from typing import Any, Callable, Mapping, Optional, Sequence

INVALID = -1  # Any output outside the label set; never equals a target.


def as_text(value: Any) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def text(output, example=None, is_target=False) -> str:
  """The output as text, unchanged: T5's tasks without a postprocessor compare it exactly."""
  del example, is_target
  return as_text(output)


def label_index(label_classes: Sequence[str]) -> Callable[..., int]:
  """Verbalizer string -> class index, or INVALID if not exactly a label.

  As T5's `string_label_to_class_id`: no stripping or case folding, so
  `" entailment"` or `"Entailment"` is invalid.
  """
  lookup = {label: i for i, label in enumerate(label_classes)}

  def to_index(output, example=None, is_target=False) -> int:
    del example, is_target
    return lookup.get(as_text(output), INVALID)

  return to_index


def mapped_label_index(label_classes: Sequence[str],
                       mapping: Mapping[str, str]) -> Callable[..., int]:
  """For zero-shot transfer: read predictions in another task's labels.

  E.g. a QQP prompt says `duplicate` where MRPC expects `equivalent`.
  Targets are the evaluated task's own labels and are not mapped.
  """
  to_index = label_index(label_classes)

  def to_mapped_index(output, example=None, is_target=False) -> int:
    text = as_text(output)
    return to_index(text if is_target else mapping.get(text, text))

  return to_mapped_index


def multirc(output, example=None, is_target=False):
  """Label index plus, for targets, the question it belongs to (for EM).

  The group is the question id alone, as in T5 (TFDS numbers MultiRC's
  questions through the whole split, so it names one question).
  """
  result = {"value": label_index(("False", "True"))(output)}
  if is_target:
    result["group"] = int(example["idx/question"])
  return result


def record(output, example=None, is_target=False):
  """Targets: all gold answers and the query id (to deduplicate)."""
  if is_target:
    return {"value": [as_text(a) for a in example["answers"]],
            "group": (int(example["idx/passage"]), int(example["idx/query"]))}
  return {"value": as_text(output)}


def qa(output, example=None, is_target=False):
  """Targets: the list of all gold answers; predictions: the text."""
  if is_target:
    return [as_text(a) for a in example["answers"]]
  return as_text(output)


def string_to_float(output, example=None, is_target=False, default=-1.0) -> float:
  """STS-B: the decoded number, or `default` if it is not one."""
  del example, is_target
  try:
    return float(as_text(output))
  except ValueError:
    return default


# Words dropped before comparing a WSC prediction with the referent.
_DETERMINERS = frozenset((
    "a", "an", "few", "her", "his", "each", "every", "many", "much", "my", "our",
    "some", "that", "the", "their", "these", "this", "those", "which", "whose", "your"))


def _wsc_words(text: str) -> str:
  return " ".join(w for w in text.strip().lower().split(" ") if w not in _DETERMINERS)


def wsc(output, example=None, is_target=False) -> int:
  """WSC is trained to name the referent; eval asks: did it name span1?

  Targets are the example's 0/1 label. A prediction is 1 when its words
  (lowercased, determiners dropped) are a subset or superset of the
  candidate's, unless only one of the two is possessive; empty is INVALID.
  """
  if is_target:
    return int(example["label"])
  prediction = _wsc_words(as_text(output))
  if not prediction:
    return INVALID
  candidate = _wsc_words(as_text(example["targets_pretokenized"]))
  if ("'" in prediction) != ("'" in candidate):
    return 0
  predicted, expected = set(prediction.split(" ")), set(candidate.split(" "))
  return int(predicted <= expected or expected <= predicted)


SENTINEL_0 = "<extra_id_0>"


def without_sentinel(postprocess_fn: Optional[Callable]) -> Callable:
  """`postprocess_fn` applied after removing a leading `<extra_id_0>` from a prediction.

  As seqio's `add_task_with_sentinels`: the text after the sentinel is stripped.
  """
  def post(output, example=None, is_target=False):
    if not is_target and as_text(output).startswith(SENTINEL_0):
      output = as_text(output)[len(SENTINEL_0):].strip()
    return postprocess_fn(output, example=example, is_target=is_target) if postprocess_fn else output
  return post


def rank_target(output, example=None, is_target=False):
  """Rank classification keeps, per candidate, whose it is and if it is right."""
  del output
  if not is_target:
    raise ValueError("rank classification tasks are scored, not decoded: "
                     "evaluate them with score metrics (T5X score_batch)")
  result = {"id": int(example["rank_id"]), "label": int(example["rank_label"]),
            "correct": bool(example["rank_correct"])}
  if "idx/question" in example:  # MultiRC: EM is grouped per question, as in `multirc`.
    result["group"] = int(example["idx/question"])
  return result
