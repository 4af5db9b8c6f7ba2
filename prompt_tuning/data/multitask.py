"""Multi-task model tuning data: T5's SuperGLUE mixture, DPR included (the paper's baseline).

  super_glue_v102_proportional   the standard (task-prefixed) SuperGLUE tasks
                                 and `dpr_v001_simple`, each sampled in
                                 proportion to its training examples

T5 registers this mixture under the same name with the same members (WSC
trains on its positive referents; AX-b / AX-g only evaluate, rate 0), and
the paper's multi-task model tuning used it. The rates are
`rate_num_examples` of the training examples after preprocessing (ReCoRD
has one per answer) with T5's defaults (no maximum, temperature 1), which
gives T5's weights. Evaluation is per member task, each with its own
metrics; DPR has no validation split, so the validation metrics are the
eight SuperGLUE tasks'.
"""
from typing import Optional

import seqio

from prompt_tuning.data import super_glue

SUPER_GLUE_PROPORTIONAL = "super_glue_v102_proportional"
# Training examples after preprocessing (the numbers behind T5's weights).
TRAIN_EXAMPLES = {
    super_glue.DPR: 1_322,
    super_glue.base_name("boolq"): 9_427,
    super_glue.base_name("cb"): 250,
    super_glue.base_name("copa"): 400,
    super_glue.base_name("multirc"): 27_243,
    super_glue.base_name("record"): 138_854,
    super_glue.base_name("rte"): 2_490,
    super_glue.base_name("wic"): 5_428,
    super_glue.base_name("wsc"): 259,
    super_glue.base_name("axb"): 0,
    super_glue.base_name("axg"): 0,
}


def rate_num_examples(num_examples: float, maximum: Optional[float] = None, scale: float = 1.0,
                      temperature: float = 1.0) -> float:
  """A mixing rate from an example count, with seqio's `mixing_rate_num_examples` semantics
  (which T5's `rate_num_examples` calls): scaled, then capped at `maximum` when one is given
  (None or 0: no cap), then raised to 1 / `temperature`."""
  rate = num_examples * scale
  if maximum:
    rate = min(rate, maximum)
  if temperature != 1.0:
    rate = rate ** (1.0 / temperature)
  return rate


def register() -> list:
  """Registers the mixture (after its tasks); returns its name."""
  seqio.MixtureRegistry.remove(SUPER_GLUE_PROPORTIONAL)
  seqio.MixtureRegistry.add(SUPER_GLUE_PROPORTIONAL, [
      (name, rate_num_examples(count)) for name, count in TRAIN_EXAMPLES.items()])
  return [SUPER_GLUE_PROPORTIONAL]
