"""The architecture contract (.importlinter): layers import only the layers below them, and the
core never imports TensorFlow. Checked here and by `lint-imports` in .ci/run."""
import os
import shutil
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _lint(root: str) -> subprocess.CompletedProcess:
  return subprocess.run(["lint-imports", "--no-cache", "--config", os.path.join(root, ".importlinter")],
                        cwd=root, capture_output=True, text=True)


def test_the_tree_keeps_the_contract():
  result = _lint(REPO)
  assert result.returncode == 0, result.stdout
  assert "Contracts: 2 kept, 0 broken." in result.stdout


@pytest.mark.parametrize("module, line, reported", [
    ("model/t5.py", "from prompt_tuning.runs import backbone",
     "prompt_tuning.model.t5 -> prompt_tuning.runs.backbone"),
    ("config/errors.py", "from prompt_tuning.parallel import multihost",
     "prompt_tuning.config.errors -> prompt_tuning.parallel.multihost"),
    ("training/step.py", "import seqio", "prompt_tuning.training.step -> seqio"),
])
def test_an_upward_or_tensorflow_import_breaks_it(tmp_path, module, line, reported):
  shutil.copytree(os.path.join(REPO, "prompt_tuning"), tmp_path / "prompt_tuning",
                  ignore=shutil.ignore_patterns("assets", "__pycache__"))
  shutil.copy(os.path.join(REPO, ".importlinter"), tmp_path / ".importlinter")
  with open(tmp_path / "prompt_tuning" / module, "a") as f:
    f.write(f"\n{line}\n")
  result = _lint(str(tmp_path))
  assert result.returncode == 1 and "Contracts: 1 kept, 1 broken." in result.stdout, result.stdout
  assert reported in result.stdout.split("Broken contracts", 1)[1]
