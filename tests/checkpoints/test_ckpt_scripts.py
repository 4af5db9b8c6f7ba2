"""The checkpoint scripts: --help, extract a variable, diff two checkpoints, convert HF -> T5X."""
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from prompt_tuning.checkpoints import hf
from prompt_tuning.checkpoints import t5x
from tests.checkpoints import ckpt_testlib as lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import convert_hf_to_t5x  # noqa: E402
import diff_checkpoints  # noqa: E402
import extract_variable  # noqa: E402


@pytest.mark.parametrize("script", ["extract_variable.py", "diff_checkpoints.py", "convert_hf_to_t5x.py",
                                    "convert_t5x_to_hf.py", "export_peft.py"])
def test_help(script):
  out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", script), "--help"],
                       capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": ROOT})
  assert "usage:" in out.stdout


def test_extract_variable(tmp_path, capsys):
  out = str(tmp_path / "emb.npy")
  assert extract_variable.main([lib.TENSORSTORE, "token_embedder/embedding", out]) == 0
  np.testing.assert_array_equal(np.load(out), np.load(lib.EMBEDDING_NPY))
  assert extract_variable.main([lib.MSGPACK, "--list"]) == 0
  assert "optimizer/target/encoder/layers_0/attention/query/kernel\t(8, 12)\tfloat32" in capsys.readouterr().out
  assert extract_variable.main([lib.MSGPACK, "no/such/var", out]) == 2


def test_extract_prompt_from_training_checkpoint(tmp_path):
  from prompt_tuning.checkpoints import state as state_lib
  from prompt_tuning.training import optim
  from prompt_tuning.training import step as train_step
  prompt = {"prompt": {"prompt": jnp.arange(12, dtype=jnp.float32).reshape(3, 4)}}
  state_lib.TrainCheckpointer(str(tmp_path)).save(5, train_step.TrainState.create(prompt, optim.adafactor()))
  out = str(tmp_path / "p.npy")
  assert extract_variable.main([str(tmp_path / "checkpoint_5" / "state"), "train_state/prompt/prompt/prompt", out]) == 0
  np.testing.assert_array_equal(np.load(out), np.arange(12).reshape(3, 4))


def test_diff_checkpoints(tmp_path, capsys):
  assert diff_checkpoints.main([lib.TENSORSTORE, lib.TENSORSTORE]) == 0
  params = traverse_util.flatten_dict(t5x.load_t5x_params(lib.MSGPACK), sep="/")
  params = {k: np.asarray(v) for k, v in params.items()}
  params["decoder/decoder_norm/scale"] = params["decoder/decoder_norm/scale"] + 0.5
  del params["encoder/encoder_norm/scale"]
  changed = t5x.write_t5x(str(tmp_path / "c"), traverse_util.unflatten_dict(params, sep="/"))
  assert diff_checkpoints.main(["--params_only", lib.MSGPACK, changed]) == 1
  out = capsys.readouterr().out
  assert "only in A: encoder/encoder_norm/scale" in out
  assert "decoder/decoder_norm/scale: max |A - B| = 0.5" in out
  assert diff_checkpoints.main(["--params_only", "--atol", "0.6", lib.MSGPACK, changed]) == 1  # a name is missing


def test_convert_hf_to_t5x(hf_t5, tmp_path):
  out = str(tmp_path / "checkpoint_0")
  assert convert_hf_to_t5x.main([hf_t5[0], out]) == 0
  assert t5x.detect_layout(out) == "tensorstore"
  converted = traverse_util.flatten_dict(t5x.load_t5x_params(out), sep="/")
  leaves, _ = hf.open_hf_t5(hf_t5[0])
  assert set(converted) == set(leaves)
  for name, leaf in leaves.items():
    np.testing.assert_array_equal(np.asarray(converted[name]), leaf.value(), err_msg=name)
  assert convert_hf_to_t5x.main([hf_t5[0], out]) == 2  # refuses to overwrite
