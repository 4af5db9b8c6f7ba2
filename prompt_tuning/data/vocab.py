"""The T5 SentencePiece vocabulary, shipped with the package (no download)."""
import functools
import pathlib

import seqio

VOCAB_PATH = str(pathlib.Path(__file__).resolve().parents[1] / "assets" / "sentencepiece.model")
NUM_EXTRA_IDS = 100  # T5's sentinels <extra_id_0> .. <extra_id_99>.


@functools.lru_cache(maxsize=None)
def default_vocabulary() -> seqio.SentencePieceVocabulary:
  """T5's cc_all.32000 vocabulary plus 100 extra ids (32,100 ids in all)."""
  return seqio.SentencePieceVocabulary(VOCAB_PATH, extra_ids=NUM_EXTRA_IDS)


def sentinel_id(index: int, vocabulary: seqio.Vocabulary = None) -> int:
  """Id of `<extra_id_{index}>`; T5 numbers sentinels down from the top."""
  vocabulary = vocabulary or default_vocabulary()
  if not 0 <= index < NUM_EXTRA_IDS:
    raise ValueError(f"sentinel index {index} is outside 0..{NUM_EXTRA_IDS - 1}")
  return vocabulary.vocab_size - 1 - index
