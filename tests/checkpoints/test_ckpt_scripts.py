"""The checkpoint scripts: --help, extract a variable, diff two checkpoints, convert HF -> T5X."""
import os
import subprocess
import sys

import jax
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
  assert extract_variable.main([str(tmp_path / "checkpoint_5" / "state"), "train_state/params/prompt/prompt", out]) == 0
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


# ----------------------------------------------------------------------------- every kind of checkpoint


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
  """A run folder with two complete training checkpoints (steps 2 and 4) and a torn one (6)."""
  from prompt_tuning.checkpoints import state as state_lib
  from prompt_tuning.training import optim
  from prompt_tuning.training import step as train_step
  folder = tmp_path_factory.mktemp("run")
  ckpt = state_lib.TrainCheckpointer(str(folder), keep=None)
  for step, offset in ((2, 0.0), (4, 0.25)):
    prompt = {"prompt": {"prompt": jnp.arange(12, dtype=jnp.float32).reshape(3, 4) + offset}}
    ckpt.save(step, train_step.TrainState.create(prompt, optim.adafactor()), {"position": step})
  torn = folder / "checkpoint_6"
  torn.mkdir()
  (torn / "state").mkdir()  # a write that never finished: no metadata.json
  return str(folder)


def _listing(capsys, path):
  assert extract_variable.main([path, "--list"]) == 0
  return dict(line.split("\t", 1) for line in capsys.readouterr().out.strip().splitlines())


def test_list_and_extract_a_training_checkpoint(model_dir, tmp_path, capsys):
  listing = _listing(capsys, os.path.join(model_dir, "checkpoint_2"))
  prompt_name = next(n for n in listing if n.endswith("/prompt/prompt") and "opt_state" not in n)
  assert listing[prompt_name] == "(3, 4)\tfloat32" and any("opt_state" in n for n in listing)
  assert _listing(capsys, os.path.join(model_dir, "checkpoint_2", "state")) == listing
  assert _listing(capsys, model_dir) == listing  # a MODEL_DIR: its newest complete checkpoint
  out = str(tmp_path / "p.npy")
  assert extract_variable.main([model_dir, "prompt/prompt", out]) == 0  # the step-4 prompt, by model name
  np.testing.assert_array_equal(np.load(out), np.arange(12).reshape(3, 4) + 0.25)
  np.testing.assert_array_equal(np.load(out), np.load(os.path.join(model_dir, "prompts", "prompt_4.npy")))


def test_diff_training_checkpoints(model_dir, capsys):
  a, b = (os.path.join(model_dir, f"checkpoint_{s}") for s in (2, 4))
  assert diff_checkpoints.main(["--params_only", a, a]) == 0
  assert diff_checkpoints.main(["--params_only", a, b]) == 1
  assert capsys.readouterr().out.splitlines()[-1] == "prompt/prompt: max |A - B| = 0.25"
  assert diff_checkpoints.main([a, b]) == 1
  out = capsys.readouterr().out.strip().splitlines()  # the optimizer state and step are equal
  assert len(out) == 1 and out[0].startswith("train_state/") and out[0].endswith("prompt/prompt: max |A - B| = 0.25")


def test_an_incomplete_training_checkpoint_is_one_line(model_dir, capsys):
  assert extract_variable.main([os.path.join(model_dir, "checkpoint_6"), "--list"]) == 2
  assert diff_checkpoints.main([os.path.join(model_dir, "checkpoint_6"), model_dir]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 2 and all("checkpoint_6 is incomplete (no valid metadata.json)" in e for e in err), err


def test_hugging_face_folders_under_t5x_names(hf_t5, tmp_path, capsys):
  listing = _listing(capsys, hf_t5[0])
  assert listing["decoder/logits_dense/kernel"] == "(16, 64)\tfloat32" and len(listing) == len(hf.open_hf_t5(hf_t5[0])[0])
  out = str(tmp_path / "head.npy")
  assert extract_variable.main([hf_t5[0], "decoder/logits_dense/kernel", out]) == 0
  np.testing.assert_array_equal(np.load(out), hf_t5[1].lm_head.weight.detach().numpy().T)
  converted = str(tmp_path / "checkpoint_0")
  assert convert_hf_to_t5x.main([hf_t5[0], converted]) == 0
  capsys.readouterr()
  assert diff_checkpoints.main(["--params_only", converted, hf_t5[0]]) == 0  # T5X vs HF, name by name
  assert capsys.readouterr().out.strip() == "identical"


def test_every_t5x_layout_lists_and_diffs(tmp_path, capsys):
  params = jax.tree.map(np.asarray, t5x.load_t5x_params(lib.TENSORSTORE))
  ocdbt = lib.write_orbax(tmp_path / "ocdbt", params)
  orbax = lib.write_orbax(tmp_path / "orbax", params, ocdbt=False)
  for path, layout in ((lib.MSGPACK, "msgpack"), (lib.TENSORSTORE, "tensorstore"), (ocdbt, "ocdbt"),
                       (orbax, "orbax")):
    assert t5x.detect_layout(path) == layout
    listing = _listing(capsys, path)
    assert listing[next(n for n in listing if n.endswith("encoder/layers_0/attention/query/kernel"))] == (
        "(8, 12)\tfloat32" if path == lib.MSGPACK else "(4, 4)\tfloat32")
  for path in (ocdbt, orbax):
    assert diff_checkpoints.main(["--params_only", lib.TENSORSTORE, path]) == 0
