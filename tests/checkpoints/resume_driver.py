"""A tiny tuning run that checkpoints and resumes: the subject of the exact-resume test.

Run twice with the same command line, it continues from its last checkpoint. The data stream is
a pure function of (seed, position), so saving the position restores the data order exactly.
Prints "saved <step>" after each checkpoint, "resumed <step>" when it resumes; logs every step's
loss to MODEL_DIR/metrics.jsonl (and TensorBoard) through the train loop's MetricsWriter.

  python -m tests.checkpoints.resume_driver --backbone B --model_dir D --steps N --save_every K --out P.npy

`--trainable '.*'` tunes every weight (and the prompt) instead of the prompt alone; the output
file holds every trainable array, flattened and concatenated.
"""
import argparse
import functools
import sys

import jax
import jax.numpy as jnp
import numpy as np

from prompt_tuning.checkpoints import restore
from prompt_tuning.checkpoints import state as state_lib
from prompt_tuning.model import prompted as model_lib
from prompt_tuning.model import prompts
from prompt_tuning.model.extended import decoder_prompt
from prompt_tuning.model.extended import deep
from prompt_tuning.model.extended import ia3
from prompt_tuning.runs import metrics_writer
from prompt_tuning.training import optim
from prompt_tuning.training import step as train_step
from tests.checkpoints import ckpt_testlib as lib

CFG = lib.tiny_cfg()
PROMPT_LENGTH = 3


def batch_at(seed: int, position: int) -> dict:
  """The batch at a stream position: depends only on (seed, position)."""
  rng = np.random.default_rng([seed, position])
  inputs = rng.integers(2, CFG.vocab_size, (4, 6)).astype(np.int32)
  targets = rng.integers(2, CFG.vocab_size, (4, 3)).astype(np.int32)
  decoder_inputs = np.concatenate([np.zeros((4, 1), np.int32), targets[:, :-1]], 1)
  return {"encoder_input_tokens": inputs, "decoder_input_tokens": decoder_inputs,
          "decoder_target_tokens": targets}


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--backbone", required=True)
  ap.add_argument("--model_dir", required=True)
  ap.add_argument("--steps", type=int, default=12)
  ap.add_argument("--save_every", type=int, default=2)
  ap.add_argument("--seed", type=int, default=0)
  ap.add_argument("--out", required=True)
  ap.add_argument("--trainable", default="prompt/.*", help="one TRAINABLE pattern")
  ap.add_argument("--methods", action="store_true",
                  help="also IA3, per-layer prompts and a decoder prompt (their subtrees train too)")
  args = ap.parse_args(argv)

  methods = dict(ia3=ia3.ia3(), deep_prompt=deep.deep_prompt(layers=[0], mode="add"),
                 decoder_prompt=decoder_prompt.decoder_prompt(2)) if args.methods else {}
  module = model_lib.build(CFG, prompt_length=PROMPT_LENGTH, **methods)
  patterns = [args.trainable] + [f"{name}/.*" for name in methods]
  backbone = restore.restore_frozen(module, args.backbone, trainable=patterns)
  tx = (optim.adafactor(learning_rate=0.3) if args.trainable == "prompt/.*" else
        optim.adafactor(learning_rate=1e-3, weight_decay_rate=None, factored=True))
  checkpointer = state_lib.TrainCheckpointer(args.model_dir, keep=2, frozen_checkpoint=args.backbone,
                                             trainable=patterns)
  prompt = model_lib.init_prompt(module, prompts.random_uniform(), jax.random.PRNGKey(args.seed), backbone)
  trainable, frozen = model_lib.split(model_lib.merge(prompt, backbone), patterns)
  state, position, rng = train_step.TrainState.create(trainable, tx), 0, jax.random.PRNGKey(args.seed + 1)
  restored = checkpointer.restore_latest(state)
  if restored is not None:
    state, position, rng = restored.state, restored.data_state["position"], jnp.asarray(restored.rng)
    print(f"resumed {restored.step}", flush=True)
  writer = metrics_writer.MetricsWriter(args.model_dir, start_step=int(state.step))
  step_fn = jax.jit(functools.partial(train_step.train_step, module=module, tx=tx))
  while int(state.step) < args.steps:
    state, stats = step_fn(state, frozen, batch_at(args.seed, position), rng)  # dropout on
    position += 1
    writer.write(int(state.step), {"train/loss": stats["loss"]})
    if int(state.step) % args.save_every == 0:
      checkpointer.save(int(state.step), state, {"position": position}, rng=rng)
      print(f"saved {int(state.step)}", flush=True)
  writer.close()
  arrays = [np.asarray(x, np.float32).ravel() for x in jax.tree.leaves(state.params)]
  np.save(args.out, np.concatenate(arrays), allow_pickle=False)
  return 0


if __name__ == "__main__":
  sys.exit(main())
