"""T5X -> Hugging Face: the written folder loads in transformers untied, with the project's logits,
and reads back into the project bit for bit."""
import json
import os
import sys

import jax
import numpy as np
import pytest
from flax import traverse_util

from prompt_tuning.checkpoints import hf
from prompt_tuning.checkpoints import shapes
from prompt_tuning.checkpoints import t5x
from prompt_tuning.model import prompted as model_lib
from tests.checkpoints import ckpt_testlib as lib

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import convert_t5x_to_hf  # noqa: E402


def _orbax(tmp_path, ocdbt):
  params = jax.tree.map(np.asarray, t5x.load_t5x_params(lib.TENSORSTORE))
  return lib.write_orbax(tmp_path / "orbax" / "1", params, ocdbt=ocdbt, step=3)


def _logits(params, cfg):
  module = model_lib.build(cfg.replace(dtype="float32", dropout_rate=0.0), prompt_length=0)
  inp, dec, tgt = lib.batch(cfg.vocab_size, batch_size=3, inputs=9, targets=6)
  return np.asarray(jax.jit(module.apply)({"params": params}, inp, dec, tgt)), (inp, dec, tgt)


@pytest.mark.parametrize("layout", ["msgpack", "tensorstore", "orbax", "ocdbt"])
def test_t5x_to_hf_to_project_round_trip(layout, tmp_path, capsys):
  src, cfg = {"msgpack": (lib.MSGPACK, lib.MSGPACK_CFG), "tensorstore": (lib.TENSORSTORE, lib.TENSORSTORE_CFG),
              "orbax": (None, lib.TENSORSTORE_CFG), "ocdbt": (None, lib.TENSORSTORE_CFG)}[layout]
  src = src or _orbax(tmp_path, ocdbt=layout == "ocdbt")
  assert t5x.detect_layout(src) == layout
  out = str(tmp_path / "hf")
  distance = ["--relative_attention_max_distance", str(cfg.relative_attention_max_distance)]
  assert convert_t5x_to_hf.main([src, out, *distance]) == 0
  assert f"wrote {out}" in capsys.readouterr().out
  config = hf.read_hf_config(out)
  assert config["tie_word_embeddings"] is False and config["scale_decoder_outputs"] is False
  for field in ("emb_dim", "num_heads", "head_dim", "mlp_dim", "num_encoder_layers", "num_decoder_layers",
                "relative_attention_num_buckets", "relative_attention_max_distance", "vocab_size"):
    assert getattr(hf.config_from_hf(config), field) == getattr(cfg, field), field

  t5x_params = t5x.load_t5x_params(src)
  ours, (inp, dec, tgt) = _logits(t5x_params, cfg)
  model = transformers.T5ForConditionalGeneration.from_pretrained(out).eval()
  assert model.lm_head.weight.data_ptr() != model.shared.weight.data_ptr()  # untied
  kernel = np.asarray(t5x_params["decoder"]["logits_dense"]["kernel"])
  np.testing.assert_array_equal(model.lm_head.weight.detach().numpy(), kernel.T)
  lib.assert_logits_match(ours, model, inp, dec, tgt)

  back, back_cfg = hf.load_hf_t5(out)  # HF -> project: every parameter bit for bit
  flat_back = traverse_util.flatten_dict(back, sep="/")
  flat_src = traverse_util.flatten_dict(t5x_params, sep="/")
  assert set(flat_back) == set(flat_src)
  for name, value in flat_src.items():
    np.testing.assert_array_equal(np.asarray(flat_back[name]), np.asarray(value), err_msg=name)
  np.testing.assert_array_equal(_logits(back, back_cfg)[0], ours)


def test_the_architecture_comes_from_the_shapes():
  cfg = shapes.backbone_config(lib.MSGPACK)
  for field in ("vocab_size", "emb_dim", "num_heads", "head_dim", "mlp_dim", "num_encoder_layers",
                "num_decoder_layers", "relative_attention_num_buckets"):
    assert getattr(cfg, field) == getattr(lib.MSGPACK_CFG, field), field


def test_sharded_and_bfloat16_output(tmp_path):
  params = t5x.load_t5x_params(lib.TENSORSTORE)
  out = hf.write_hf_t5(str(tmp_path / "hf"), params, lib.TENSORSTORE_CFG, dtype="bfloat16",
                       max_shard_bytes=100_000)
  index = json.load(open(os.path.join(out, "model.safetensors.index.json")))
  files = sorted(set(index["weight_map"].values()))
  assert len(files) > 1 and files[0] == f"model-00001-of-{len(files):05d}.safetensors"
  assert hf.read_hf_config(out)["torch_dtype"] == "bfloat16"
  back = traverse_util.flatten_dict(hf.load_hf_t5(out)[0], sep="/")
  for name, value in traverse_util.flatten_dict(params, sep="/").items():
    assert back[name].dtype == jax.numpy.bfloat16, name
    np.testing.assert_array_equal(np.asarray(back[name]), np.asarray(value).astype(jax.numpy.bfloat16))
  model = transformers.T5ForConditionalGeneration.from_pretrained(out)  # the index is read too
  assert model.lm_head.weight.dtype == torch.bfloat16
  assert model.lm_head.weight.data_ptr() != model.shared.weight.data_ptr()


def test_the_hf_reader_and_writer_are_inverse(hf_t5, tmp_path):
  folder, torch_model = hf_t5
  out = str(tmp_path / "again")
  assert convert_t5x_to_hf.main([folder, out]) == 0
  reread = transformers.T5ForConditionalGeneration.from_pretrained(out)
  for name, value in torch_model.state_dict().items():
    np.testing.assert_array_equal(reread.state_dict()[name].numpy(), value.numpy(), err_msg=name)


def test_errors_are_one_line_and_write_nothing(tmp_path, capsys):
  existing = tmp_path / "exists"
  existing.mkdir()
  assert convert_t5x_to_hf.main([lib.TENSORSTORE, str(existing)]) == 2
  assert convert_t5x_to_hf.main([lib.ORBAX_NON_T5, str(tmp_path / "b")]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 2 and "already exists" in err[0] and "not a model checkpoint" in err[1], err
  assert sorted(os.listdir(tmp_path)) == ["exists"]
  with pytest.raises(ValueError, match="missing"):
    hf.write_hf_t5(str(tmp_path / "c"), {"token_embedder": {"embedding": np.zeros((4, 2))}},
                   lib.TENSORSTORE_CFG)
