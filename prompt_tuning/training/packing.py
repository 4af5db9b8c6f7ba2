"""Packing short examples into full-length rows, each example with its own copy of the prompt.

SuperGLUE inputs are far shorter than the 512 tokens a batch is padded to (RTE's median is about
62), so a padded prompt-tuning step mostly computes on padding. A packed encoder row holds
segments back to back, each `[P prompt slots | the example's input tokens]`:

  encoder_input_tokens  [0 0 0 a1 a2 a3 0 0 0 b1 b2 0 ...]   (prompt slots hold token 0)
  encoder_segment_ids   [1 1 1 1  1  1  2 2 2 2  2  0 ...]   (0 = padding)
  encoder_positions     [0 1 2 3  4  5  0 1 2 3  4  0 ...]   (positions < P are prompt slots)

and the decoder row holds the examples' targets in the same segment order. The model fills the
slots with the prompt and keeps attention inside a segment, so each example's loss is the one it
has alone in a padded row (tested). Pure numpy: the benchmark uses it without TensorFlow.
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np

PACKED_FEATURES = ("encoder_segment_ids", "encoder_positions", "decoder_segment_ids")
# A packed decoder row is this many times the targets length: the packer counts real target
# tokens, and classification targets are shorter than their padded length (RTE's are 5-6 of 8),
# so 4 x 8 slots hold the targets of the 3-5 RTE examples whose inputs fill a 612-slot row.
TARGETS_PER_ROW = 4


@dataclasses.dataclass
class _Row:
  inputs: list  # per segment: input token ids
  targets: list
  encoder_free: int
  decoder_free: int


class Packer:
  """First-fit packing into `batch_size` open rows; a batch is emitted when an example fits none.

  Deterministic in the order of the examples, so a resumed run re-packs the same batches.
  """

  def __init__(self, encoder_length: int, decoder_length: int, prompt_length: int, batch_size: int):
    if encoder_length <= prompt_length:
      raise ValueError(f"packed encoder length {encoder_length} leaves no room after the "
                       f"{prompt_length} prompt slots: make it longer than the prompt")
    self.encoder_length, self.decoder_length = encoder_length, decoder_length
    self.prompt_length, self.batch_size = prompt_length, batch_size
    self.rows: list[_Row] = []

  def add(self, inputs: Sequence[int], targets: Sequence[int]) -> Optional[dict]:
    """Places one example; returns the full batch it closed, if any."""
    inputs = list(inputs)[:self.encoder_length - self.prompt_length]
    targets = list(targets)[:self.decoder_length]
    need_enc, need_dec = self.prompt_length + len(inputs), len(targets)
    for row in self.rows:
      if row.encoder_free >= need_enc and row.decoder_free >= need_dec:
        self._place(row, inputs, targets)
        return None
    done = None
    if len(self.rows) == self.batch_size:
      done = self.flush()
    row = _Row([], [], self.encoder_length, self.decoder_length)
    self.rows.append(row)
    self._place(row, inputs, targets)
    return done

  def _place(self, row: _Row, inputs: list, targets: list) -> None:
    row.inputs.append(inputs)
    row.targets.append(targets)
    row.encoder_free -= self.prompt_length + len(inputs)
    row.decoder_free -= len(targets)

  def flush(self) -> Optional[dict]:
    """The open rows as a batch (empty rows pad it to `batch_size`); None when nothing is open."""
    if not self.rows:
      return None
    batch = packed_features(self.rows, self.batch_size, self.encoder_length, self.decoder_length,
                            self.prompt_length)
    self.rows = []
    return batch


def packed_features(rows: Sequence[_Row], batch_size: int, encoder_length: int,
                    decoder_length: int, prompt_length: int) -> dict:
  """Model features of packed rows (see the module docstring for the layout)."""
  def zeros(length, dtype=np.int32):
    return np.zeros((batch_size, length), dtype)
  enc, enc_seg, enc_pos = zeros(encoder_length), zeros(encoder_length), zeros(encoder_length)
  tgt, dec_in, dec_seg = zeros(decoder_length), zeros(decoder_length), zeros(decoder_length)
  for r, row in enumerate(rows):
    e = d = 0
    for s, (inputs, targets) in enumerate(zip(row.inputs, row.targets), start=1):
      n = prompt_length + len(inputs)
      enc[r, e + prompt_length:e + n] = inputs
      enc_seg[r, e:e + n] = s
      enc_pos[r, e:e + n] = np.arange(n)
      m = len(targets)
      tgt[r, d:d + m] = targets
      dec_in[r, d + 1:d + m] = targets[:-1]  # shifted right inside the segment; BOS is 0
      dec_seg[r, d:d + m] = s
      e, d = e + n, d + m
  return {"encoder_input_tokens": enc, "encoder_segment_ids": enc_seg, "encoder_positions": enc_pos,
          "decoder_input_tokens": dec_in, "decoder_target_tokens": tgt, "decoder_segment_ids": dec_seg,
          "decoder_loss_weights": (tgt > 0).astype(np.float32)}


def num_examples(batch) -> int:
  """Examples in a batch: packed rows count their segments, rank-classification candidates
  (`rank_correct` [examples, candidates]) their examples, padded rows count when non-empty."""
  if "rank_correct" in batch:
    return int(np.asarray(batch["rank_correct"]).shape[0])
  if "encoder_segment_ids" in batch:
    return int(np.asarray(batch["encoder_segment_ids"]).max(axis=1).sum())
  return int((np.asarray(batch["decoder_target_tokens"]) > 0).any(axis=1).sum())


def pack(examples: Iterable[tuple[Sequence[int], Sequence[int]]], encoder_length: int,
         decoder_length: int, prompt_length: int, batch_size: int, final: bool = True) -> Iterator[dict]:
  """Batches of packed rows from (input ids, target ids) pairs; `final` also emits the last one."""
  packer = Packer(encoder_length, decoder_length, prompt_length, batch_size)
  for inputs, targets in examples:
    batch = packer.add(inputs, targets)
    if batch is not None:
      yield batch
  if final:
    batch = packer.flush()
    if batch is not None:
      yield batch
