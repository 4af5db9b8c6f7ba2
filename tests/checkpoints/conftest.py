"""Checkpoint tests: 8 host CPU devices (set before jax starts) and a saved HF T5 1.1 model."""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import pytest

from tests.checkpoints import ckpt_testlib


@pytest.fixture(scope="session")
def hf_t5(tmp_path_factory):
  """(folder, in-memory torch model) of a saved tiny HF T5 1.1."""
  folder = str(tmp_path_factory.mktemp("hf_t5"))
  return folder, ckpt_testlib.save_tiny_hf_t5(folder)
