"""Paths, configs and builders shared by the checkpoint tests."""
import os

import numpy as np

from prompt_tuning.model import t5

TESTDATA = os.path.join(os.path.dirname(__file__), "testdata")
MSGPACK = os.path.join(TESTDATA, "t5_tiny_msgpack.checkpoint_0")
TENSORSTORE = os.path.join(TESTDATA, "t5_1_1_tiny_tensorstore", "checkpoint_3")
EMBEDDING_NPY = os.path.join(TESTDATA, "t5_1_1_tiny_tensorstore", "embedding_32128x4.npy")
ORBAX_NON_T5 = os.path.join(TESTDATA, "tiny_orbax_non_t5", "1")
TENSORSTORE_NON_T5 = os.path.join(TESTDATA, "tiny_tensorstore_non_t5", "checkpoint_1")
PROMPT_5x256 = os.path.join(TESTDATA, "prompt_5x256.npy")

# The architectures of the two T5 fixtures.
MSGPACK_CFG = t5.T5Config(vocab_size=32128, emb_dim=8, num_heads=4, head_dim=3, mlp_dim=16,
                          num_encoder_layers=2, num_decoder_layers=2,
                          relative_attention_num_buckets=32, dtype="float32", dropout_rate=0.0)
TENSORSTORE_CFG = t5.T5Config(vocab_size=32128, emb_dim=4, num_heads=2, head_dim=2, mlp_dim=8,
                              num_encoder_layers=2, num_decoder_layers=2,
                              relative_attention_num_buckets=4, relative_attention_max_distance=8,
                              dtype="float32", dropout_rate=0.0)


def save_tiny_hf_t5(folder, seed=0):
  """A random T5 1.1 (gated-GELU, untied) model with a distinct lm_head, saved to `folder`."""
  import torch
  from transformers import T5Config
  from transformers import T5ForConditionalGeneration
  torch.manual_seed(seed)
  config = T5Config(vocab_size=64, d_model=16, d_kv=4, d_ff=32, num_layers=2, num_decoder_layers=3,
                    num_heads=3, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                    relative_attention_num_buckets=8, relative_attention_max_distance=16,
                    decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)
  hf_model = T5ForConditionalGeneration(config).eval()
  with torch.no_grad():
    hf_model.lm_head.weight = torch.nn.Parameter(torch.randn(64, 16))
    for p in hf_model.parameters():
      p.add_(0.1 * torch.randn_like(p))  # layer norms away from 1
  hf_model.save_pretrained(folder)
  return hf_model


def batch(vocab, batch_size=2, inputs=7, targets=5, seed=0):
  """Inputs and teacher-forced targets with right padding in both."""
  rng = np.random.default_rng(seed)
  inp = rng.integers(2, vocab, (batch_size, inputs))
  inp[0, inputs - 2:] = 0
  tgt = rng.integers(2, vocab, (batch_size, targets))
  tgt[-1, targets - 2:] = 0
  dec = np.concatenate([np.zeros((batch_size, 1), int), tgt[:, :-1]], 1) * (tgt > 0)
  return inp, dec, tgt


def tiny_cfg():
  """A small T5 1.1 (vocab 64) for training tests: cheap to compile and run on CPU."""
  return t5.T5Config(vocab_size=64, emb_dim=16, num_heads=2, head_dim=4, mlp_dim=32,
                     num_encoder_layers=1, num_decoder_layers=1, relative_attention_num_buckets=8,
                     relative_attention_max_distance=16, dtype="float32", dropout_rate=0.1)


def write_random_backbone(path, cfg, seed=0):
  """A random frozen backbone for `cfg`, saved as a T5X checkpoint (no flax init needed)."""
  from flax import traverse_util

  from prompt_tuning.checkpoints import restore
  from prompt_tuning.checkpoints import t5x
  from prompt_tuning.model import prompted as model_lib
  rng = np.random.default_rng(seed)
  expected = restore.expected_frozen(model_lib.build(cfg, prompt_length=1))
  flat = {n: (0.3 * rng.standard_normal(s.shape) + (1.0 if n.endswith("scale") else 0.0)).astype(np.float32)
          for n, s in expected.items()}
  return t5x.write_t5x(str(path), traverse_util.unflatten_dict(flat, sep="/"))


def assert_logits_match(ours, torch_model, inp, dec, tgt, atol=1e-4):
  """Our logits vs a torch (or PEFT) T5's on the same padded batch, over real target positions."""
  import torch
  with torch.no_grad():
    theirs = torch_model(input_ids=torch.tensor(inp), attention_mask=torch.tensor(inp > 0),
                         decoder_input_ids=torch.tensor(dec),
                         decoder_attention_mask=torch.tensor(tgt > 0)).logits.numpy()
  valid = tgt > 0
  np.testing.assert_allclose(np.asarray(ours)[valid], theirs[valid], atol=atol, rtol=0)


def write_orbax(path, params, ocdbt=True, step=None):
  """`params` as an Orbax checkpoint under `target/`: one OCDBT store, or (ocdbt=False) one
  zarr folder per array, as Orbax writes with use_ocdbt=False."""
  import orbax.checkpoint as ocp
  tree = {"target": params, **({"state": {"step": np.asarray(step, np.int32)}} if step is not None else {})}
  handler = ocp.PyTreeCheckpointHandler(use_ocdbt=ocdbt)
  ocp.Checkpointer(handler).save(str(path), args=ocp.args.PyTreeSave(tree))
  return str(path)
