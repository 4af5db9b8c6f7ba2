"""Partial restore: assignment rules, from-scratch fallback, and mismatch messages."""
import jax
import numpy as np
import pytest
from flax import traverse_util

from prompt_tuning.checkpoints import prompt_io
from prompt_tuning.checkpoints import restore
from prompt_tuning.checkpoints import t5x
from prompt_tuning.model import prompted as model_lib
from prompt_tuning.model import prompts as prompts_lib
from tests.checkpoints import ckpt_testlib as lib

Q = "encoder/layers_0/attention/query/kernel"


def _flat(tree):
  return traverse_util.flatten_dict(tree, sep="/")


def test_shape_mismatch_names_the_parameter():
  module = model_lib.build(lib.TENSORSTORE_CFG.replace(mlp_dim=6), prompt_length=2)
  with pytest.raises(ValueError, match=r"'decoder/layers_0/mlp/wi_0/kernel': the model expects shape \(4, 6\) "
                                       r"but the checkpoint has \(4, 8\)"):
    restore.restore_frozen(module, lib.TENSORSTORE)


def test_missing_and_unexpected_parameters():
  deeper = model_lib.build(lib.TENSORSTORE_CFG.replace(num_decoder_layers=3), prompt_length=2)
  with pytest.raises(ValueError, match="'decoder/layers_2/.*' but not found"):
    restore.restore_frozen(deeper, lib.TENSORSTORE)
  shallower = model_lib.build(lib.TENSORSTORE_CFG.replace(num_encoder_layers=1), prompt_length=2)
  with pytest.raises(ValueError, match="parameters the model lacks: encoder/layers_1/"):
    restore.restore_frozen(shallower, lib.TENSORSTORE)
  frozen = restore.restore_frozen(shallower, lib.TENSORSTORE, strict=False)
  assert "layers_1" not in frozen["encoder"]


def test_fallback_to_scratch_and_assignment_map(hf_t5):
  from prompt_tuning.checkpoints import hf
  folder = hf_t5[0]  # vocab 64: initializing from scratch stays cheap
  cfg = hf.config_from_hf(hf.read_hf_config(folder), dtype="float32", num_decoder_layers=4)
  module = model_lib.build(cfg, prompt_length=2)
  leaves = restore.open_backbone(folder)
  frozen = _flat(restore.restore_frozen(
      module, folder, fallback_to_scratch=True,
      assignment_map=[(r"encoder/layers_0/(.*)", r"encoder/layers_1/\1"),  # restore layer 0 from 1
                      (r"decoder/layers_0/mlp/.*", None)]))                 # from scratch
  np.testing.assert_array_equal(frozen[Q], leaves["encoder/layers_1/attention/query/kernel"].value())
  assert frozen["decoder/layers_3/mlp/wo/kernel"].shape == (32, 16)  # not in the checkpoint: scratch
  assert not np.array_equal(frozen["decoder/layers_0/mlp/wo/kernel"], leaves["decoder/layers_0/mlp/wo/kernel"].value())
  np.testing.assert_array_equal(frozen["decoder/layers_0/self_attention/out/kernel"],
                                leaves["decoder/layers_0/self_attention/out/kernel"].value())


def test_dtype_kind_mismatch(monkeypatch):
  module = model_lib.build(lib.TENSORSTORE_CFG, prompt_length=2)
  leaves = restore.open_backbone(lib.TENSORSTORE)
  leaves[Q] = t5x.ArrayLeaf(np.zeros((4, 4), np.int32))
  monkeypatch.setattr(restore, "open_backbone", lambda path: leaves)
  with pytest.raises(ValueError, match=f"'{Q}': the model expects float32 but the checkpoint has int32"):
    restore.restore_frozen(module, lib.TENSORSTORE)


def test_prompt_from_initializer_or_file(tmp_path):
  module = model_lib.build(lib.TENSORSTORE_CFG, prompt_length=5)
  frozen = restore.restore_frozen(module, lib.TENSORSTORE)
  sampled = restore.restore_prompt(module, frozen, initializer=prompts_lib.sampled_vocab(100),
                                   rng=jax.random.PRNGKey(1))["prompt"]["prompt"]
  table = np.load(lib.EMBEDDING_NPY)[:100]
  assert all(any(np.array_equal(row, t) for t in table) for row in np.asarray(sampled))
  path = prompt_io.save_npy(str(tmp_path / "p.npy"), np.arange(20, dtype=np.float32).reshape(5, 4))
  loaded = restore.restore_prompt(module, frozen, path=path)["prompt"]["prompt"]
  np.testing.assert_array_equal(loaded, np.arange(20).reshape(5, 4))
  wrong = model_lib.build(lib.TENSORSTORE_CFG, prompt_length=6)
  with pytest.raises(ValueError, match=r"prompt/prompt: .* has shape \(5, 4\) but the model expects \(6, 4\)"):
    restore.restore_prompt(wrong, frozen, path=path)


def test_hf_folder_is_a_backbone_too(hf_t5):
  from prompt_tuning.checkpoints import hf
  cfg = hf.config_from_hf(hf.read_hf_config(hf_t5[0]), dtype="float32")
  module = model_lib.build(cfg, prompt_length=2)
  frozen = _flat(restore.restore_frozen(module, hf_t5[0]))
  np.testing.assert_array_equal(frozen["decoder/logits_dense/kernel"],
                                hf_t5[1].lm_head.weight.detach().numpy().T)
