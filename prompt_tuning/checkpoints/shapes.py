"""The T5 1.1 architecture a backbone's parameter shapes imply, so tools need no size typed in.

T5X checkpoints store no model config, but every size of T5Config shows in some parameter
shape: the embedding gives the vocabulary and width, the relative-position table the heads and
buckets, a query kernel the head width, `wi_0` the MLP width, and the layer names the depth.
Only the relative positions' maximum distance leaves no trace (128 in every T5 1.1), and
dropout and dtypes are run settings. Hugging Face folders carry their config.json instead.
"""
from __future__ import annotations

import re
from typing import Mapping

from prompt_tuning.checkpoints import hf
from prompt_tuning.checkpoints import t5x
from prompt_tuning.model import t5

_LAYER = re.compile(r"^(encoder|decoder)/layers_(\d+)/")


def config_from_shapes(shapes: Mapping[str, tuple], **overrides) -> t5.T5Config:
  """The T5Config of frozen parameters given as T5X name -> shape (`overrides` win)."""
  def shape(name):
    if name not in shapes:
      raise ValueError(f"no {name} among the parameters: this is not a T5 1.1 encoder-decoder "
                       "checkpoint (original T5 and other models are not supported)")
    return tuple(shapes[name])
  vocab_size, emb_dim = shape("token_embedder/embedding")
  num_heads, buckets = shape("encoder/relpos_bias/rel_embedding")
  layers = {"encoder": set(), "decoder": set()}
  for name in shapes:
    match = _LAYER.match(name)
    if match:
      layers[match.group(1)].add(int(match.group(2)))
  shape("encoder/layers_0/mlp/wi_1/kernel")  # the gated MLP of T5 1.1
  fields = dict(vocab_size=vocab_size, emb_dim=emb_dim, num_heads=num_heads,
                head_dim=shape("encoder/layers_0/attention/query/kernel")[1] // num_heads,
                mlp_dim=shape("encoder/layers_0/mlp/wi_0/kernel")[1],
                num_encoder_layers=len(layers["encoder"]), num_decoder_layers=len(layers["decoder"]),
                relative_attention_num_buckets=buckets)
  return t5.T5Config(**{**fields, **overrides})


def backbone_config(path: str, **overrides) -> t5.T5Config:
  """The T5Config of a T5X checkpoint (any layout) or a Hugging Face T5 1.1 folder."""
  if hf.is_hf_checkpoint(path):
    return hf.config_from_hf(hf.read_hf_config(path), **overrides)
  params = t5x.open_checkpoint(path).params()
  return config_from_shapes({name: leaf.shape for name, leaf in params.items()}, **overrides)
