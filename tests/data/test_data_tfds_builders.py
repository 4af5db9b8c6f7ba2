"""The real TFDS builders behind every registered task (no network).

Mocked TFDS data never reaches a builder's own code, so two checks use the real builders:
every registered source's builder is constructed and its declared features are fed through
the task's preprocessors; and two datasets are really downloaded and prepared, from small
files served in place of their URLs, then read through the registered tasks.
"""
import contextlib
import io
import json
import zipfile

import numpy as np
import pytest
import seqio
import tensorflow as tf
import tensorflow_datasets as tfds
from tensorflow_datasets.core.download import checksums
from tensorflow_datasets.core.download import downloader

import prompt_tuning.data

# TFDS name -> (split, standard inputs, targets) for an example whose text fields hold their
# own names (integers and class labels 0, sequences of one item): the inputs show exactly
# which of the builder's fields the preprocessor reads, and in what order.
SOURCES = {
    "super_glue/boolq:1.0.2": ("validation", "boolq passage: passage question: question",
                               "False"),
    "super_glue/cb:1.0.2": ("validation", "cb hypothesis: hypothesis premise: premise",
                            "entailment"),
    "super_glue/copa:1.0.2": ("validation", "copa choice1: choice1 choice2: choice2 "
                              "premise: premise question: question", "choice1"),
    "super_glue/multirc:1.0.2": ("validation", "multirc question: question answer: answer "
                                 "paragraph: paragraph", "False"),
    "super_glue/record:1.0.2": ("validation", "record query: query entities: entities "
                                "passage: passage", "answers"),
    "super_glue/rte:1.0.2": ("validation", "rte hypothesis: hypothesis premise: premise",
                             "entailment"),
    "super_glue/wic:1.0.2": ("validation", "wic sentence1: sentence1 sentence2: sentence2 "
                             "word: word", "False"),
    "super_glue/wsc.fixed:1.0.2": ("validation", "wsc: *span2_text*", "span1_text"),
    "super_glue/axb:1.0.2": ("test", "rte sentence1: sentence1 sentence2: sentence2",
                             "entailment"),
    "super_glue/axg:1.0.2": ("test", "rte hypothesis: hypothesis premise: premise",
                             "entailment"),
    "glue/cola:1.0.0": ("validation", "cola sentence: sentence", "unacceptable"),
    "glue/sst2:1.0.0": ("validation", "sst2 sentence: sentence", "negative"),
    "glue/mrpc:1.0.0": ("validation", "mrpc sentence1: sentence1 sentence2: sentence2",
                        "not_equivalent"),
    "glue/qqp:1.0.0": ("validation", "qqp question1: question1 question2: question2",
                       "not_duplicate"),
    "glue/stsb:1.0.0": ("validation", "stsb sentence1: sentence1 sentence2: sentence2", "0.0"),
    "glue/mnli:1.0.0": ("validation", "mnli hypothesis: hypothesis premise: premise",
                        "entailment"),
    "glue/qnli:1.0.0": ("validation", "qnli question: question sentence: sentence",
                        "entailment"),
    "glue/rte:1.0.0": ("validation", "rte sentence1: sentence1 sentence2: sentence2",
                       "entailment"),
    "glue/wnli:1.0.0": ("validation", "wnli sentence1: sentence1 sentence2: sentence2",
                        "not_entailment"),
    "squad/v1.1:3.0.0": ("validation", "question: question context: context", "text"),
    **{f"mrqa/{config}:1.0.0": ("validation", "question: question context: context", "answers")
       for config in ("textbook_qa", "bio_asq", "race", "relation_extraction", "duo_rc",
                      "drop")},
    "definite_pronoun_resolution:1.1.0": ("test", "wsc: sentence", "candidates"),
}


def registered_sources() -> dict:
  """TFDS name -> the first registered task reading it (the standard variant)."""
  sources = {}
  for name in prompt_tuning.data.TASK_NAMES:
    task = seqio.get_mixture_or_task(name)
    if isinstance(task, seqio.Task) and isinstance(task.source, seqio.TfdsDataSource):
      sources.setdefault(task.source.tfds_dataset.name, name)
  return sources


def test_every_registered_source_is_checked():
  assert set(registered_sources()) == set(SOURCES)


def _named_after_fields(tensor_info, name=""):
  """One example of the declared shapes: text holds its field's name, numbers are 0."""
  if isinstance(tensor_info, dict):
    return {key: _named_after_fields(info, key) for key, info in tensor_info.items()}
  shape = [1 if n is None else n for n in tensor_info.shape]
  if tensor_info.dtype == tf.string:
    return np.full(shape, name, dtype=object)
  return np.zeros(shape, dtype=tensor_info.dtype.as_numpy_dtype)


def _serve_declared_features(builder, split, **kwargs):
  del split, kwargs
  return tf.data.Dataset.from_tensors(_named_after_fields(builder.info.features.get_tensor_info()))


@pytest.mark.parametrize("tfds_name", sorted(SOURCES))
def test_real_builder_declares_what_the_task_reads(tfds_name, tmp_path):
  builder = tfds.builder(tfds_name, data_dir=str(tmp_path))  # The real class; nothing fetched.
  assert str(builder.info.version) == tfds_name.rsplit(":", 1)[1]
  split, inputs, targets = SOURCES[tfds_name]
  task = seqio.get_mixture_or_task(registered_sources()[tfds_name])
  with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE,
                              as_dataset_fn=_serve_declared_features):
    [example] = task.get_dataset(None, split=split, shuffle=False,
                                 try_in_mem_cache=False).as_numpy_iterator()
  assert example["inputs_pretokenized"].decode() == inputs
  assert example["targets_pretokenized"].decode() == targets


# --- Real download_and_prepare runs, served from local files. ---

RTE_URL = "https://dl.fbaipublicfiles.com/glue/superglue/data/v2/RTE.zip"
RTE_ROWS = {
    "train": [{"premise": "It rained all day.", "hypothesis": "The ground was wet.",
               "label": "entailment", "idx": 0}],
    "val": [{"premise": "Dana Reeve died of lung cancer.", "hypothesis": "Dana Reeve is dead.",
             "label": "entailment", "idx": 0},
            {"premise": "The shop opens at nine.", "hypothesis": "The shop never opens.",
             "label": "not_entailment", "idx": 1}],
    "test": [{"premise": "Cats sleep a lot.", "hypothesis": "Cats are awake.", "idx": 0}],
}
DPR_URL = "https://s3.amazonaws.com/datasets.huggingface.co/definite_pronoun_resolution/{}.c.txt"
# The released files: sentence, pronoun, candidates, answer, then a blank line.
DPR_FILES = {
    "train": "Bob asked Tom if he can lend some money.\nhe\nBob,Tom\nTom\n\n"
             "When Sue met Ann, she smiled.\nshe\nSue, Ann\nSue\n\n",
    "test": "The dog chased the cat until it was tired.\nit\nThe dog,the cat\nThe dog\n\n",
}


def _rte_zip() -> bytes:
  """The archive layout SuperGLUE publishes: RTE/{train,val,test}.jsonl."""
  buffer = io.BytesIO()
  with zipfile.ZipFile(buffer, "w") as archive:
    for split, rows in RTE_ROWS.items():
      archive.writestr(f"RTE/{split}.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
  return buffer.getvalue()


class _Response:
  def __init__(self, url, size):
    self.url, self.headers = url, {"Content-length": str(size)}


@pytest.fixture(name="serve")
def serve_fixture(tmp_path, monkeypatch):
  """serve(builder, {url: bytes}, task): those URLs answer with the bytes; `task` (and every
  variant sharing its source) reads TFDS data from an empty folder. Returns the URLs fetched.

  Only the HTTP fetch is replaced: TFDS's download manager, checksum check, extraction and
  the builder's `_split_generators` / `_generate_examples` all run. Each file's checksum is
  registered for its URL, as `--register_checksums` would record it.
  """
  fetched = []

  def serve(builder_name, files, task_name):
    @contextlib.contextmanager
    def open_url(url, **kwargs):
      del kwargs
      fetched.append(url)
      yield _Response(url, len(files[url])), iter([files[url]])

    url_infos = {}
    for i, (url, data) in enumerate(files.items()):
      path = tmp_path / f"served_{i}"
      path.write_bytes(data)
      info = checksums.compute_url_info(path)
      url_infos[url] = checksums.UrlInfo(size=info.size, checksum=info.checksum,
                                         filename=url.rsplit("/", 1)[1])
    monkeypatch.setattr(downloader, "_open_url", open_url)
    monkeypatch.setattr(tfds.builder_cls(builder_name), "url_infos", url_infos)
    loader = seqio.get_mixture_or_task(task_name).source.tfds_dataset
    monkeypatch.setattr(loader, "_data_dir_override", str(tmp_path / "tfds"))
    return fetched

  return serve


def _texts(task_name, split):
  dataset = seqio.get_mixture_or_task(task_name).get_dataset(
      {"inputs": 64, "targets": 8}, split=split, shuffle=False, try_in_mem_cache=False)
  return [(e["inputs_pretokenized"].decode(), e["targets_pretokenized"].decode())
          for e in dataset.as_numpy_iterator()]


def test_real_download_and_prepare_of_rte(serve, tmp_path):
  fetched = serve("super_glue", {RTE_URL: _rte_zip()}, "super_glue_rte_v102")
  assert _texts("super_glue_rte_v102", "validation") == [
      ("rte hypothesis: Dana Reeve is dead. premise: Dana Reeve died of lung cancer.",
       "entailment"),
      ("rte hypothesis: The shop never opens. premise: The shop opens at nine.",
       "not_entailment")]
  assert fetched == [RTE_URL]  # Fetched once, when the first split was read.
  assert _texts("taskless_super_glue_rte_v102", "train") == [
      ("hypothesis: The ground was wet. premise: It rained all day.", "entailment")]
  assert _texts("super_glue_rte_v102", "test") == [
      ("rte hypothesis: Cats are awake. premise: Cats sleep a lot.", "<unk>")]
  prepared = tfds.builder("super_glue/rte:1.0.2", data_dir=str(tmp_path / "tfds"))
  assert {s: prepared.info.splits[s].num_examples for s in ("train", "validation", "test")} == {
      "train": 1, "validation": 2, "test": 1}
  assert fetched == [RTE_URL]


def test_real_download_and_prepare_of_dpr(serve):
  files = {DPR_URL.format(split): text.encode() for split, text in DPR_FILES.items()}
  fetched = serve("definite_pronoun_resolution", files, "dpr_v001_simple")
  assert sorted(_texts("dpr_v001_simple", "train")) == [
      ("wsc: Bob asked Tom if *he* can lend some money.", "Tom"),
      ("wsc: When Sue met Ann, *she* smiled.", "Sue")]
  assert _texts("taskless_dpr_v001_simple", "test") == [
      ("The dog chased the cat until *it* was tired.", "The dog")]
  assert sorted(fetched) == sorted(files)
