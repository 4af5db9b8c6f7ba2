"""Data for prompt tuning: seqio tasks in T5's text-to-text formats.

Importing this package registers every task (nothing is downloaded: data
is read through TFDS when a dataset is first requested). It is the only
part of `prompt_tuning` that imports TensorFlow. The project README's Tasks
section lists the task names, variants and metrics, and how to add a task.
"""
from prompt_tuning.data import tf_startup  # noqa: F401  first: TensorFlow, quietly and without GPUs
from prompt_tuning.data import features
from prompt_tuning.data import glue
from prompt_tuning.data import local
from prompt_tuning.data import metrics
from prompt_tuning.data import multitask
from prompt_tuning.data import qa
from prompt_tuning.data import rank_classification
from prompt_tuning.data import super_glue
from prompt_tuning.data import transfer
from prompt_tuning.data import vocab
from prompt_tuning.data.local import local_task
from prompt_tuning.data.local import rank_classification_twin

# Every task and mixture this package registers, in registration order.
TASK_NAMES = tuple(super_glue.register() + glue.register() + transfer.register()
                   + qa.register() + multitask.register())
