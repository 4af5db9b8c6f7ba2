"""A model-tuning step against references we did not write: Hugging Face transformers' T5 in torch
gives the gradients of T5X's loss, a hand-written NumPy Adafactor applies them."""
import jax
import numpy as np
import pytest
from flax import serialization
from flax import traverse_util

from prompt_tuning.checkpoints import hf
from prompt_tuning.model import prompted as model_lib
from prompt_tuning.training import optim
from prompt_tuning.training import step as ts
from tests import tiny
from tests.training.test_optim import NumpyAdafactor

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
from tests.model.test_parity_hf import hf_model  # noqa: E402  (needs torch)

# Dimensions of 128 and more, so that the matrices have factored second moments (the square
# attention kernels, the wider MLP and the vocabulary ones), the norms and position tables not.
CFG = tiny.tiny_config(vocab_size=256, emb_dim=128, num_heads=2, head_dim=64, mlp_dim=256)
PRETRAINED_STEP = 1000


def _flat(tree):
  return traverse_util.flatten_dict(tree, sep="/")


def _torch_grads(params, batch):
  """Gradients of T5X's loss (token cross-entropy + 1e-4 logsumexp^2, summed over the target
  tokens) of the Hugging Face model holding `params`, under T5X names."""
  m = hf_model(CFG, params)
  targets = torch.tensor(np.asarray(batch["decoder_target_tokens"]), dtype=torch.long)
  ids = torch.tensor(np.asarray(batch["encoder_input_tokens"]), dtype=torch.long)
  logits = m(input_ids=ids, attention_mask=(ids > 0).long(),
             decoder_input_ids=torch.tensor(np.asarray(batch["decoder_input_tokens"]), dtype=torch.long),
             decoder_attention_mask=(targets > 0).long()).logits
  lse = torch.logsumexp(logits, -1)
  token = lse - torch.gather(logits, -1, targets[..., None])[..., 0]
  loss = ((token + 1e-4 * lse ** 2) * (targets > 0)).sum()
  loss.backward()
  by_name = dict(m.named_parameters())
  grads = {}
  for ours, (theirs, transpose) in hf.name_map(CFG).items():
    g = by_name[theirs].grad.numpy()
    grads[ours] = g.T if transpose else g
  return float(loss), grads


def _pretrained_state(tmp_path, module, tx):
  """Random positive second moments at step 1000, written as a T5X checkpoint and restored."""
  params = jax.eval_shape(lambda: tiny.random_params(module))
  abstract = jax.eval_shape(tx.init, params)[0]
  rng = np.random.RandomState(7)
  slots = {f"{n}/{slot}": (rng.rand(*x.shape) * 1e-2).astype(np.float32)
           for slot in optim.SLOTS for n, x in _flat(getattr(abstract, slot)).items()}
  tree = {"optimizer": {"target": {}, "state": {"step": np.asarray(PRETRAINED_STEP, np.int32),
                                                "param_states": traverse_util.unflatten_dict(slots, sep="/")}}}
  path = tmp_path / "checkpoint_1000"
  path.mkdir()
  (path / "checkpoint").write_bytes(serialization.msgpack_serialize(tree))
  state = optim.restore_t5x_state(tx.init(params), str(path))
  stats = {}
  for name, p in _flat(params).items():
    factored = slots[f"{name}/v_row"].shape != (1,)
    stats[name] = (slots[f"{name}/v_row"], slots[f"{name}/v_col"]) if factored else slots[f"{name}/v"]
  return state, stats


def test_a_model_tuning_step_equals_torch_gradients_and_numpy_adafactor(tmp_path):
  module = model_lib.build(CFG, prompt_length=0)
  params = tiny.random_params(module, seed=4)
  tx = optim.adafactor(learning_rate=1e-3, weight_decay_rate=None, factored=True)
  opt_state, stats = _pretrained_state(tmp_path, module, tx)
  trainable, frozen = model_lib.split(params, [".*"])
  assert frozen == {}
  state = ts.TrainState(step=jax.numpy.zeros((), jax.numpy.int32), params=trainable, opt_state=opt_state)
  assert _flat(opt_state[0].v_row)["encoder/layers_0/mlp/wi_0/kernel"].shape == (128,)

  reference = NumpyAdafactor(1e-3, step=PRETRAINED_STEP)
  reference.stats = stats
  expected = {n: np.asarray(x, np.float64) for n, x in _flat(params).items()}
  step = jax.jit(lambda s, b: ts.train_step(s, frozen, b, None, module=module, tx=tx))
  for i in range(2):  # the second step starts from weights and statistics both updated
    batch = tiny.random_batch(batch=4, inputs_len=9, targets_len=5, vocab=CFG.vocab_size, seed=10 + i)
    weights = traverse_util.unflatten_dict({n: v.astype(np.float32) for n, v in expected.items()}, sep="/")
    torch_loss, grads = _torch_grads(weights, batch)
    ours_grads = _flat(jax.grad(lambda p: ts.loss_fn(p, frozen, batch, None, module=module)[0])(state.params))
    for name, g in grads.items():  # float32 sums over 4 x 5 target tokens: compare at their scale
      np.testing.assert_allclose(ours_grads[name], g, rtol=1e-4, atol=1e-5 * np.abs(g).max(), err_msg=name)
    state, metrics = step(state, batch)
    np.testing.assert_allclose(float(metrics["loss"]), torch_loss, rtol=1e-5)
    expected = reference.step(expected, {n: g.astype(np.float64) for n, g in grads.items()})
    got = _flat(jax.tree.map(np.asarray, state.params))
    assert got.keys() == expected.keys()
    for name, value in got.items():  # measured: at most 1.9e-7 apart (float32 weights near 1)
      np.testing.assert_allclose(value, expected[name], rtol=0, atol=1e-6, err_msg=f"step {i + 1}: {name}")
  moved = max(np.abs(got[n] - np.asarray(v)).max() for n, v in _flat(params).items())
  assert moved > 1e-4  # the weights really moved (lr 1e-3, clipped RMS 1 updates)
  assert int(state.opt_state[0].count) == PRETRAINED_STEP + 2
