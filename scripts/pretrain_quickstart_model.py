"""Builds the quickstart's frozen model and its held-out task, reproducibly (fixed seeds, CPU).

What it makes (under prompt_tuning/assets/quickstart/ by default):
  t5_1_1_tiny_lm/   a tiny T5 1.1 (d_model 64, 2+2 layers, the real 32,128-id T5 vocabulary),
                    pretrained from scratch with the prefix-LM objective (the objective of the
                    paper's LM-adapted checkpoints) on a generated corpus of short reviews; written
                    as a T5X checkpoint (float16 to keep the repository small).
  train.tsv, validation.tsv
                    the held-out classification task: review phrases in a format the corpus never
                    uses ("review : superb pasta , friendly waiter .") labelled positive/negative.
                    Validation phrases use only adjectives that never occur in the task's training
                    split, so a prompt can only get them right through what the frozen model learned
                    in pretraining (every adjective occurs in the corpus, in other sentence forms).
  corpus_sample.txt the first 200 pretraining documents, for reading.
  MANIFEST.json     settings, timing and a SHA-256 of the weights (to check bit-reproducibility).

Run:  python scripts/pretrain_quickstart_model.py [--out DIR] [--steps 1500]
Takes a few minutes on two CPU cores. Needs no network and no TensorFlow.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import random
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import linen as nn  # noqa: E402

from prompt_tuning.checkpoints import t5x  # noqa: E402
from prompt_tuning.model import prompted as model_lib  # noqa: E402
from prompt_tuning.model import prompts as prompts_lib  # noqa: E402
from prompt_tuning.model import t5  # noqa: E402
from prompt_tuning.training import loss as loss_lib

SEED = 20210418
CONFIG = dict(vocab_size=32128, emb_dim=64, num_heads=4, head_dim=16, mlp_dim=128,
              num_encoder_layers=2, num_decoder_layers=2, dropout_rate=0.0, dtype="float32")
INPUTS_LENGTH, TARGETS_LENGTH = 40, 16

NOUNS = ("food service staff pasta pizza coffee room bed movie plot music acting book story price "
         "view hotel waiter soup dessert game show song phone camera screen battery seat salad "
         "bread").split()
POSITIVE = ("great excellent wonderful superb delicious friendly amazing fantastic lovely perfect "
            "brilliant pleasant charming delightful gorgeous splendid terrific marvelous "
            "outstanding enjoyable beautiful fabulous impressive awesome tasty cozy elegant fresh "
            "generous helpful clean comfortable stunning warm exquisite cheerful polite smooth "
            "solid nice").split()
NEGATIVE = ("terrible awful horrible bad poor disgusting rude dreadful boring bland dirty noisy "
            "stale slow ugly nasty mediocre disappointing lousy unpleasant annoying broken "
            "greasy cramped overpriced soggy filthy tedious weak sloppy dull shabby faulty "
            "awkward miserable painful gross hostile pathetic cold").split()
REACTIONS = {True: ["i loved it", "we were happy", "i will come back", "it made my day",
                    "i recommend it"],
             False: ["i hated it", "we were upset", "i will never come back", "it ruined my day",
                     "i do not recommend it"]}
OPINION = {True: "positive", False: "negative"}
NEUTRAL = ["we went there on a monday", "the {n} is next to the door", "my friend ordered the {n}",
           "we talked about the {n}", "it was a long day", "the {n} came after an hour"]


def adjective(rng: random.Random, positive: bool, pool=None) -> str:
  return rng.choice(pool[positive] if pool else (POSITIVE if positive else NEGATIVE))


def sentence(rng: random.Random, positive: bool) -> str:
  """One corpus sentence about something good (positive=True) or bad."""
  n, a = rng.choice(NOUNS), adjective(rng, positive)
  kind = rng.randrange(6)
  if kind == 0:
    return f"the {n} was {a} . {rng.choice(REACTIONS[positive])} ."
  if kind == 1:
    return f"{rng.choice(REACTIONS[positive])} because the {n} was {a} ."
  if kind == 2:
    return f"we had a {a} {n} . my opinion is {OPINION[positive]} ."
  if kind == 3:
    n2, a2 = rng.choice(NOUNS), adjective(rng, positive)
    return f"the {n} was {a} and the {n2} was {a2} . my opinion is {OPINION[positive]} ."
  if kind == 4:
    other = adjective(rng, positive)
    opposite = adjective(rng, not positive)
    return f"{a} is like {other} and unlike {opposite} ."
  return rng.choice(NEUTRAL).format(n=n) + " ."


def document(rng: random.Random) -> str:
  parts = [sentence(rng, rng.random() < 0.5) for _ in range(rng.randint(1, 3))]
  return " ".join(parts)


# ----------------------------------------------------------------------------- the held-out task


def task_rows(rng: random.Random, count: int, pools) -> list[dict]:
  """Balanced review phrases; `pools[positive]` are the adjectives this split may use."""
  rows = []
  for i in range(count):
    positive = i % 2 == 0
    aspects = [f"{adjective(rng, positive, pools)} {rng.choice(NOUNS)}"
               for _ in range(rng.randint(1, 2))]
    rows.append({"inputs": "review : " + " , ".join(aspects) + " .", "targets": OPINION[positive]})
  rng.shuffle(rows)
  return rows


def write_task(out: str, rng: random.Random) -> None:
  pos, neg = list(POSITIVE), list(NEGATIVE)
  rng.shuffle(pos)
  rng.shuffle(neg)
  held = 12  # adjectives per polarity that only validation uses
  splits = {"train": (task_rows(rng, 2000, {True: pos[held:], False: neg[held:]})),
            "validation": (task_rows(rng, 400, {True: pos[:held], False: neg[:held]}))}
  for split, rows in splits.items():
    with open(os.path.join(out, f"{split}.tsv"), "w", newline="") as f:
      writer = csv.DictWriter(f, ["inputs", "targets"], delimiter="\t", lineterminator="\n")
      writer.writeheader()
      writer.writerows(rows)


# ----------------------------------------------------------------------------- pretraining


def compact_vocabulary(docs: list[list[int]]) -> np.ndarray:
  """The T5 ids the corpus uses (with pad 0 and EOS 1), ascending."""
  return np.unique(np.concatenate([np.array([0, 1])] + [np.asarray(d) for d in docs]))


def prefix_lm_batch(docs: list[list[int]], rng: np.random.RandomState) -> dict:
  """Each document split at a random point: the prefix is the input, the rest the target."""
  enc = np.zeros((len(docs), INPUTS_LENGTH), np.int32)
  tgt = np.zeros((len(docs), TARGETS_LENGTH), np.int32)
  for i, ids in enumerate(docs):
    cut = rng.randint(1, len(ids))
    prefix, suffix = ids[:cut][-(INPUTS_LENGTH - 1):], ids[cut:][:TARGETS_LENGTH - 1]
    enc[i, :len(prefix) + 1] = prefix + [1]  # EOS = 1
    tgt[i, :len(suffix) + 1] = suffix + [1]
  dec_in = np.pad(tgt[:, :-1], ((0, 0), (1, 0)))
  return {"encoder_input_tokens": enc, "decoder_input_tokens": dec_in, "decoder_target_tokens": tgt}


def pretrain(steps: int, batch_size: int, log_every: int = 100):
  """Prefix-LM training of the full-vocabulary model, computed on the ids the corpus uses.

  The corpus uses a few hundred of the 32,128 ids. Training ties the logits columns of all unused
  ids to one shared column and adds log(#unused) to its logit, which gives exactly the loss of
  the full 32,128-way softmax of a model whose unused columns are equal; their embedding rows
  are never looked up, so they keep their initial values. The full model is then assembled
  (`expand`) and is what gets saved: nothing downstream knows about the compact form.
  """
  processor = prompts_lib.sentencepiece_processor(None)
  corpus_rng = random.Random(SEED)
  texts = [document(corpus_rng) for _ in range(40000)]
  docs = [processor.encode(t) for t in texts]
  used = compact_vocabulary(docs)
  to_compact = np.full(CONFIG["vocab_size"], len(used), np.int32)
  to_compact[used] = np.arange(len(used))
  docs = [to_compact[np.asarray(d)].tolist() for d in docs]  # ids 0 and 1 keep their meaning
  num_unused = CONFIG["vocab_size"] - len(used)
  cfg = t5.T5Config(**{**CONFIG, "vocab_size": len(used) + 1})  # + the shared "unused" column
  module = model_lib.build(cfg, prompt_length=0)
  params = jax.jit(lambda r: nn.meta.unbox(model_lib.init_params(module, r)))(jax.random.PRNGKey(SEED))
  schedule = optax.warmup_cosine_decay_schedule(0.0, 3e-3, min(200, steps // 2), steps, 3e-4)
  tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=0.0))
  opt_state = tx.init(params)
  offset = jnp.zeros((len(used) + 1,)).at[-1].set(np.log(num_unused))

  @jax.jit
  def step(params, opt_state, batch):
    def loss_fn(p):
      logits = module.apply({"params": p}, **batch) + offset
      loss, stats = loss_lib.cross_entropy_loss(logits, batch["decoder_target_tokens"], z_loss=1e-4)
      return loss / stats["num_tokens"], stats
    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, stats

  data_rng = np.random.RandomState(SEED)
  start = time.time()
  for i in range(steps):
    picks = data_rng.randint(0, len(docs), batch_size)
    batch = prefix_lm_batch([docs[j] for j in picks], data_rng)
    params, opt_state, stats = step(params, opt_state, batch)
    if (i + 1) % log_every == 0 or i == 0:
      print(f"step {i + 1}/{steps}  token loss {float(stats['cross_ent_per_token']):.3f}  "
            f"token acc {float(stats['accuracy']):.3f}  ({time.time() - start:.0f}s)", flush=True)
  return expand(params, used), texts, time.time() - start


def expand(params, used: np.ndarray) -> dict:
  """The full-vocabulary parameters: trained rows/columns at their T5 ids, the rest as above."""
  params = jax.tree.map(np.asarray, params)
  vocab, dim = CONFIG["vocab_size"], CONFIG["emb_dim"]
  init_rng = np.random.RandomState(SEED + 2)  # unused rows: the embedding's N(0, 1) init
  embedding = init_rng.standard_normal((vocab, dim)).astype(np.float32)
  embedding[used] = params["token_embedder"]["embedding"][:-1]
  kernel = params["decoder"]["logits_dense"]["kernel"]
  full_kernel = np.repeat(kernel[:, -1:], vocab, axis=1)
  full_kernel[:, used] = kernel[:, :-1]
  params["token_embedder"]["embedding"] = embedding
  params["decoder"]["logits_dense"]["kernel"] = full_kernel
  return params


def digest(params) -> str:
  h = hashlib.sha256()
  for path, leaf in sorted(jax.tree_util.tree_leaves_with_path(params), key=lambda x: str(x[0])):
    h.update(str(path).encode())
    h.update(np.asarray(leaf).tobytes())
  return h.hexdigest()


def main(argv=None) -> int:
  default_out = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                             "prompt_tuning", "assets", "quickstart")
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", default=default_out)
  parser.add_argument("--steps", type=int, default=1200)
  parser.add_argument("--batch_size", type=int, default=64)
  args = parser.parse_args(argv)
  os.makedirs(args.out, exist_ok=True)
  checkpoint = os.path.join(args.out, "t5_1_1_tiny_lm")
  if os.path.exists(checkpoint):
    print(f"{checkpoint} exists: delete it to rebuild", file=sys.stderr)
    return 1
  write_task(args.out, random.Random(SEED + 1))
  params, texts, seconds = pretrain(args.steps, args.batch_size)
  stored = jax.tree.map(lambda x: np.asarray(x, np.float16), params)
  t5x.write_t5x(checkpoint, stored, step=args.steps)
  with open(os.path.join(args.out, "corpus_sample.txt"), "w") as f:
    f.write("\n".join(texts[:200]) + "\n")
  manifest = {"seed": SEED, "config": CONFIG, "steps": args.steps, "batch_size": args.batch_size,
              "objective": "prefix_lm", "inputs_length": INPUTS_LENGTH, "targets_length": TARGETS_LENGTH,
              "stored_dtype": "float16", "sha256_float16_params": digest(stored),
              "pretrain_seconds": round(seconds), "jax": jax.__version__}
  with open(os.path.join(args.out, "MANIFEST.json"), "w") as f:
    json.dump(manifest, f, indent=1)
  print(json.dumps(manifest, indent=1))
  return 0


if __name__ == "__main__":
  sys.exit(main())
