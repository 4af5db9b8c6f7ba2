"""Zero-shot paraphrase transfer, QQP <-> MRPC (the paper's Table 2).

A prompt trained on one task is evaluated on the other, whose inputs keep
their own (taskless) format; a postprocessor reads the prompt's labels
(`duplicate` / `equivalent` ...) as the evaluated task's labels.

  glue_mrpc_from_qqp_v100     MRPC validation, QQP's labels understood
  glue_qqp_from_mrpc_v100     QQP validation, MRPC's labels understood
  glue_qqp_to_mrpc_zeroshot_v100  mixture: train = taskless QQP; eval =
                              QQP dev (checkpoint selection) + MRPC dev
  glue_mrpc_to_qqp_zeroshot_v100  the reverse
"""
from prompt_tuning.data import glue
from prompt_tuning.data import metrics
from prompt_tuning.data import postprocessors
from prompt_tuning.data import registry

# Evaluated task -> (task the prompt was trained on, its labels -> ours).
TRANSFERS = {
    "mrpc": ("qqp", {"not_duplicate": "not_equivalent", "duplicate": "equivalent"}),
    "qqp": ("mrpc", {"not_equivalent": "not_duplicate", "equivalent": "duplicate"}),
}


def register() -> list:
  names = []
  for target, (trained_on, mapping) in TRANSFERS.items():
    labels, _ = glue.CLASSIFICATION[target]
    version = registry.version_tag(glue.TFDS_VERSION)
    name = f"glue_{target}_from_{trained_on}_{version}"
    registry.add_task(
        name, glue.source(target, splits=("validation",)), [glue.text_preprocessor(target)],
        postprocessors.mapped_label_index(labels, mapping),
        [metrics.f1_with_invalid, metrics.accuracy], variant=registry.TASKLESS)
    mixture = f"glue_{trained_on}_to_{target}_zeroshot_{version}"
    registry.add_mixture(mixture, [registry.variant_name(glue.base_name(trained_on),
                                                         registry.TASKLESS), name])
    names += [name, mixture]
  return names
