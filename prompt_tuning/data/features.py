"""Output features and feature lengths, with the prompt accounted for.

The soft prompt is not a data-pipeline concern: the model prepends its P
prompt vectors to the embedded inputs. So the pipeline trims and pads
`inputs` to `inputs_length` tokens (EOS included), and the encoder then sees
`inputs_length + P` positions. Pass the lengths from `task_feature_lengths`
to T5X as `TASK_FEATURE_LENGTHS`; use `encoder_length` when sizing anything
that spans the prompted encoder sequence (masks, relative positions, memory).
"""
from typing import Dict

import seqio

from prompt_tuning.data import vocab

DEFAULT_INPUTS_LENGTH = 512  # The official demos' inputs length.
CLASSIFICATION_TARGETS_LENGTH = 8  # Every verbalizer here is <= 5 pieces + EOS.
SPAN_TARGETS_LENGTH = 32  # Extractive answers: SQuAD, MRQA, ReCoRD, WSC.


def output_features(vocabulary: seqio.Vocabulary = None) -> Dict[str, seqio.Feature]:
  """`inputs` and `targets`, both with EOS, in the T5 vocabulary."""
  vocabulary = vocabulary or vocab.default_vocabulary()
  return {
      "inputs": seqio.Feature(vocabulary=vocabulary, add_eos=True),
      "targets": seqio.Feature(vocabulary=vocabulary, add_eos=True),
  }


def task_feature_lengths(inputs_length: int = DEFAULT_INPUTS_LENGTH,
                         targets_length: int = CLASSIFICATION_TARGETS_LENGTH) -> Dict[str, int]:
  """Lengths for the data pipeline; they never include the prompt."""
  if inputs_length < 2 or targets_length < 2:
    raise ValueError("inputs_length and targets_length must be >= 2 (one token plus EOS)")
  return {"inputs": inputs_length, "targets": targets_length}


def encoder_length(inputs_length: int, prompt_length: int) -> int:
  """Positions the prompted encoder sees: the P prompt vectors + the inputs."""
  if prompt_length < 0:
    raise ValueError(f"prompt_length must be >= 0, got {prompt_length}")
  return inputs_length + prompt_length
