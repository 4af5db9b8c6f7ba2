"""The warning for targets whose token ids the frozen output layer cannot tell apart."""
import os
import types

import numpy as np
import pytest

from prompt_tuning.checkpoints import t5x
from prompt_tuning.runs import label_check
from tests.runs import runs_testlib
from tests.runs.runs_testlib import TINY
from tests.runs.runs_testlib import run_cli

QUICKSTART = os.path.join(runs_testlib.REPO, "prompt_tuning", "assets", "quickstart")
# T5 SentencePiece ids: "positive" 1465, "negative" 2841 (in the quickstart corpus); "yes" 4273, "no" 150.
YES, NO, POSITIVE, NEGATIVE = 4273, 150, 1465, 2841


def test_equal_columns_are_found_exactly():
  kernel = np.arange(40, dtype=np.float32).reshape(4, 10)
  kernel[:, 5:] = 7.0  # ids 5..9 share one column
  params = {"decoder": {"logits_dense": {"kernel": kernel}}}
  assert label_check.indistinct_ids(params, [2, 6, 7]) == {6: 4, 7: 4}
  assert label_check.indistinct_ids(params, [0, 1, 2]) == {}
  assert label_check.indistinct_ids({"encoder": {}}, [6]) == {}


def test_the_quickstart_model_cannot_tell_apart_the_ids_its_corpus_lacks():
  leaves = t5x.open_checkpoint(os.path.join(QUICKSTART, "t5_1_1_tiny_lm")).params()
  params = {"decoder": {"logits_dense": {"kernel": leaves["decoder/logits_dense/kernel"].value()}}}
  assert label_check.indistinct_ids(params, [POSITIVE, NEGATIVE]) == {}
  assert label_check.indistinct_ids(params, [YES, NO]) == {YES: 31952, NO: 31952}  # 32,128 - 175 used - 1


def test_a_trainable_output_layer_is_not_checked():
  kernel = np.zeros((2, 8), np.float32)
  evaluator = types.SimpleNamespace(tasks=[types.SimpleNamespace(examples=[{"targets": np.array([5, 1])}])])
  params = {"decoder": {"logits_dense": {"kernel": kernel}}}
  assert label_check.warn_indistinct_targets(params, evaluator, trainable=(".*",)) == ""


@pytest.mark.parametrize("labels, warns", [(("yes", "no"), True), (("positive", "negative"), False)])
def test_training_warns_for_labels_the_model_never_learned(tmp_path, labels, warns):
  for split in ("train", "validation"):
    rows = [line.split("\t") for line in open(os.path.join(QUICKSTART, f"{split}.tsv")).read().splitlines()[1:40]]
    text = "inputs\ttargets\n" + "".join(
        f"{inputs}\t{labels[0] if target == 'positive' else labels[1]}\n" for inputs, target in rows)
    (tmp_path / f"{split}.tsv").write_text(text)
  (tmp_path / "task.gin").write_text(f"""include 'runs/quickstart.gin'
MIXTURE_OR_TASK_NAME = @prompt_tuning.data.local_task()
prompt_tuning.data.local_task.name = "relabelled"
prompt_tuning.data.local_task.paths = {{"train": "{tmp_path}/train.tsv", "validation": "{tmp_path}/validation.tsv"}}
prompt_tuning.data.local_task.label_classes = {list(labels)}
CLASS_LABELS = {list(labels)}
""")
  flags = [f for f in TINY if not f.startswith("--gin_file")]
  result = run_cli("train", f"--gin_file={tmp_path}/task.gin", *flags, "--gin.TRAIN_STEPS=1",
                   "--gin.BATCH_SIZE=4", f"--gin.MODEL_DIR={tmp_path}/run")
  assert result.returncode == 0, result.stderr[-3000:]
  warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: the targets use")]
  assert len(warnings) == (1 if warns else 0), result.stderr[-3000:]
  if warns:
    assert "'yes' (id 4273, with 31952 others)" in warnings[0] and "'no' (id 150, with 31952 others)" in warnings[0]
