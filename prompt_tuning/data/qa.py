"""SQuAD v1.1 -> MRQA out-of-domain (the paper's Table 1), F1 only.

  squad_v110                 TFDS squad/v1.1:3.0.0, train + validation
  mrqa_{name}_v100           MRQA out-of-domain dev set of `name` (TFDS
                             mrqa/{name}:1.0.0 stores it as its `test`
                             split; here it is `validation`)
  squad_to_mrqa_v100         mixture: train on SQuAD; evaluation covers
                             SQuAD dev and all six MRQA sets
Inputs `question: ... context: ...`, target the first answer; evaluation
takes the max F1 over all answers. Only T5's standard format exists (it
has no task-name prefix).
"""
import seqio

from prompt_tuning.data import metrics
from prompt_tuning.data import postprocessors
from prompt_tuning.data import preprocessors
from prompt_tuning.data import registry

SQUAD = "squad_v110"
# Table 1 order; names are the TFDS `mrqa` builder configs.
MRQA_OUT_OF_DOMAIN = ("textbook_qa", "bio_asq", "race", "relation_extraction", "duo_rc", "drop")
MRQA_TFDS_VERSION = "1.0.0"


def mrqa_name(config: str) -> str:
  return f"mrqa_{config}_{registry.version_tag(MRQA_TFDS_VERSION)}"


def _add_qa_task(name: str, source: seqio.DataSource) -> str:
  registry.add_task(name, source, [preprocessors.qa_text], postprocessors.qa, [metrics.squad_f1])
  return name


def register() -> list:
  names = [_add_qa_task(SQUAD, seqio.TfdsDataSource(
      tfds_name="squad/v1.1:3.0.0", splits=["train", "validation"]))]
  for config in MRQA_OUT_OF_DOMAIN:
    names.append(_add_qa_task(mrqa_name(config), seqio.TfdsDataSource(
        tfds_name=f"mrqa/{config}:{MRQA_TFDS_VERSION}", splits={"validation": "test"})))
  mixture = f"squad_to_mrqa_{registry.version_tag(MRQA_TFDS_VERSION)}"
  registry.add_mixture(mixture, names)
  return names + [mixture]
