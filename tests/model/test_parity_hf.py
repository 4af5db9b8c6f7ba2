"""Logits parity with an implementation we did not write: Hugging Face transformers' T5 (PyTorch)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


from prompt_tuning.model import prompted as model_lib
from tests import tiny


def to_hf_state_dict(params, cfg):
  """Our T5X-named tree → HF T5 state dict (kernels transposed to torch's [out, in])."""
  t = lambda x: torch.tensor(np.asarray(x).T.copy())
  v = lambda x: torch.tensor(np.asarray(x).copy())
  sd = {"shared.weight": v(params["token_embedder"]["embedding"]),
        "lm_head.weight": t(params["decoder"]["logits_dense"]["kernel"])}
  for stack, n in (("encoder", cfg.num_encoder_layers), ("decoder", cfg.num_decoder_layers)):
    p = params[stack]
    sd[f"{stack}.embed_tokens.weight"] = sd["shared.weight"]
    sd[f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = t(p["relpos_bias"]["rel_embedding"])
    sd[f"{stack}.final_layer_norm.weight"] = v(p[f"{stack}_norm"]["scale"])
    for i in range(n):
      lp, pre = p[f"layers_{i}"], f"{stack}.block.{i}.layer"
      self_name = "attention" if stack == "encoder" else "self_attention"
      blocks = [("SelfAttention", self_name, "pre_attention_layer_norm" if stack == "encoder" else "pre_self_attention_layer_norm")]
      if stack == "decoder":
        blocks.append(("EncDecAttention", "encoder_decoder_attention", "pre_cross_attention_layer_norm"))
      for j, (hf, ours, norm) in enumerate(blocks):
        for a, b in zip("qkvo", ("query", "key", "value", "out")):
          sd[f"{pre}.{j}.{hf}.{a}.weight"] = t(lp[ours][b]["kernel"])
        sd[f"{pre}.{j}.layer_norm.weight"] = v(lp[norm]["scale"])
      j = len(blocks)
      for w in ("wi_0", "wi_1", "wo"):
        sd[f"{pre}.{j}.DenseReluDense.{w}.weight"] = t(lp["mlp"][w]["kernel"])
      sd[f"{pre}.{j}.layer_norm.weight"] = v(lp["pre_mlp_layer_norm"]["scale"])
  return sd


def hf_model(cfg, params):
  hf_cfg = transformers.T5Config(
      vocab_size=cfg.vocab_size, d_model=cfg.emb_dim, d_kv=cfg.head_dim, d_ff=cfg.mlp_dim,
      num_layers=cfg.num_encoder_layers, num_decoder_layers=cfg.num_decoder_layers,
      num_heads=cfg.num_heads, relative_attention_num_buckets=cfg.relative_attention_num_buckets,
      relative_attention_max_distance=cfg.relative_attention_max_distance, dropout_rate=0.0,
      feed_forward_proj="gated-gelu", tie_word_embeddings=False, decoder_start_token_id=0,
      pad_token_id=0)
  m = transformers.T5ForConditionalGeneration(hf_cfg).eval()
  # transformers >= 5 ties lm_head to the input embedding for every T5; T5 1.1 has its own head.
  m.lm_head = torch.nn.Linear(cfg.emb_dim, cfg.vocab_size, bias=False)
  m.config.tie_word_embeddings = False
  sd = to_hf_state_dict(params, cfg)
  missing, unexpected = m.load_state_dict(sd, strict=False)
  assert not unexpected, unexpected
  assert all("embed_tokens" in k for k in missing), missing
  assert torch.equal(m.lm_head.weight, sd["lm_head.weight"])
  assert m.lm_head.weight.data_ptr() != m.shared.weight.data_ptr()  # untied
  return m


def hf_logits(m, batch, **encoder_inputs):
  """HF logits for our batch's decoder inputs, with padded target positions masked."""
  tgt = np.asarray(batch["decoder_target_tokens"])
  with torch.no_grad():
    return m(**encoder_inputs,
             decoder_input_ids=torch.tensor(np.asarray(batch["decoder_input_tokens"]), dtype=torch.long),
             decoder_attention_mask=torch.tensor(tgt > 0, dtype=torch.long)).logits.numpy()


@pytest.mark.parametrize("buckets,max_distance", [(8, 16), (32, 128)])
def test_logits_match_transformers_with_padding(buckets, max_distance):
  cfg = tiny.tiny_config(relative_attention_num_buckets=buckets,
                         relative_attention_max_distance=max_distance)
  module = model_lib.build(cfg, prompt_length=0)
  params = tiny.random_params(module, seed=3)
  batch = tiny.random_batch(batch=4, inputs_len=40, targets_len=7, vocab=cfg.vocab_size, seed=1)
  ours = np.asarray(module.apply({"params": params}, **batch))

  m = hf_model(cfg, params)
  ids = torch.tensor(np.asarray(batch["encoder_input_tokens"]), dtype=torch.long)
  theirs = hf_logits(m, batch, input_ids=ids, attention_mask=(ids > 0).long())
  valid = np.asarray(batch["decoder_target_tokens"]) > 0  # padded target positions are unused
  assert valid.sum() >= 8 and (~(np.asarray(batch["encoder_input_tokens"]) > 0)).any()
  np.testing.assert_allclose(ours[valid], theirs[valid], atol=1e-4, rtol=0)


def test_prompted_encoder_equals_hf_fed_the_prompt_as_embeddings():
  """A prefix prompt is exactly HF's `inputs_embeds` with the prompt rows prepended."""
  cfg = tiny.tiny_config()
  module = model_lib.build(cfg, prompt_length=3)
  params = tiny.random_params(module, seed=5)
  batch = tiny.random_batch(batch=3, inputs_len=10, targets_len=4, vocab=cfg.vocab_size, seed=2)
  ours = np.asarray(module.apply({"params": params}, **batch))

  m = hf_model(cfg, params)
  ids = torch.tensor(np.asarray(batch["encoder_input_tokens"]), dtype=torch.long)
  prompt = torch.tensor(np.asarray(params["prompt"]["prompt"]))
  embeds = torch.cat([prompt.expand(ids.shape[0], -1, -1), m.shared(ids)], 1)
  mask = torch.cat([torch.ones(ids.shape[0], 3, dtype=torch.long), (ids > 0).long()], 1)
  theirs = hf_logits(m, batch, inputs_embeds=embeds, attention_mask=mask)
  tgt = np.asarray(batch["decoder_target_tokens"])
  np.testing.assert_allclose(ours[tgt > 0], theirs[tgt > 0], atol=1e-4, rtol=0)
