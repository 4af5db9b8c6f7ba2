"""Training: the loss, the train step over a mesh, the optimizer, and example packing.

Imports the model, checkpoints, parallel and config layers; never TensorFlow, seqio or TFDS
(batches arrive as numpy arrays from `prompt_tuning.data.pipeline`).
  loss.py     T5X's loss (cross-entropy + z-loss, summed)
  step.py     TrainState, the prompt-only train step, eval step, its jitted partitioned form
  optim.py    the paper's Adafactor (T5X semantics) from optax
  packing.py  several examples per row, each with its own prompt copy (pure numpy)
  rank_loss.py  rank-classification losses over label candidates (softmax, hinge)
  wayward.py  the wayward prompts' distance to a text's embeddings, a loss term
"""
