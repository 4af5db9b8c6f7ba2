"""Gives gin the library's functions under their module paths (idempotent, on import).

The library below the runs layer does not depend on gin; this module registers what the gin
files bind (`@prompt_tuning.model.prompted.build()`, `@prompt_tuning.training.optim.adafactor()`,
...). Every gin file of `configs/` that binds one of them starts with
`import prompt_tuning.runs.configurables`.
"""
import gin

from prompt_tuning.checkpoints import prompt_io
from prompt_tuning.model import decoding
from prompt_tuning.model import prompted
from prompt_tuning.model import prompts
from prompt_tuning.model import t5
from prompt_tuning.model.extended import decoder_prompt
from prompt_tuning.model.extended import deep
from prompt_tuning.model.extended import ia3
from prompt_tuning.model.extended import multitask
from prompt_tuning.model.extended import reparam
from prompt_tuning.training import optim


def _register(fn, module: str) -> None:
  try:
    gin.external_configurable(fn, module=module)
  except ValueError:  # registered already (the module was reloaded)
    pass


_register(t5.T5Config, "prompt_tuning.model.t5")
_register(prompted.build, "prompt_tuning.model.prompted")
_register(optim.adafactor, "prompt_tuning.training.optim")
for _name in ("random_uniform", "sampled_vocab", "class_labels", "from_string", "token_count"):
  _register(getattr(prompts, _name), "prompt_tuning.model.prompts")
_register(prompt_io.from_npy, "prompt_tuning.checkpoints.prompt_io")
for _name in ("greedy", "beam_search", "sample"):
  _register(getattr(decoding, _name), "prompt_tuning.model.decoding")
_register(multitask.multitask_prompt, "prompt_tuning.model.extended.multitask")
_register(reparam.reparameterized_prompt, "prompt_tuning.model.extended.reparam")
_register(ia3.ia3, "prompt_tuning.model.extended.ia3")
_register(deep.deep_prompt, "prompt_tuning.model.extended.deep")
_register(decoder_prompt.decoder_prompt, "prompt_tuning.model.extended.decoder_prompt")
