"""The quickstart's task and frozen checkpoint, both shipped in prompt_tuning/assets/quickstart/.

Used by configs/runs/quickstart.gin; rebuilt by scripts/pretrain_quickstart_model.py, whose
docstring describes the model, the pretraining corpus and the held-out task.
"""
import os

import gin

ASSETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets", "quickstart")
TASK_NAME = "quickstart_review_sentiment"
LABELS = ("positive", "negative")


@gin.configurable(module="prompt_tuning.data.quickstart")
def task(name: str = TASK_NAME) -> str:
  """Registers the review-sentiment task (local TSV files) and returns its name."""
  from prompt_tuning.data import local
  return local.local_task(name=name, label_classes=list(LABELS),
                         paths={s: os.path.join(ASSETS, f"{s}.tsv") for s in ("train", "validation")})


@gin.configurable(module="prompt_tuning.data.quickstart")
def checkpoint() -> str:
  """The pretrained tiny T5 1.1 (a T5X checkpoint folder)."""
  return os.path.join(ASSETS, "t5_1_1_tiny_lm")
