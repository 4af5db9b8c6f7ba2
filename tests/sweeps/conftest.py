"""Runs the sweep tests start: one CPU device each (as a user's run gets), compilations cached."""
import os

import pytest


@pytest.fixture
def one_cpu_device(monkeypatch, tmp_path_factory):
  """Runs started by the launcher: one CPU device each, compilations cached between them."""
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")
  monkeypatch.setenv("XLA_FLAGS", "")
  cache = os.path.join(os.path.dirname(str(tmp_path_factory.getbasetemp())), "sweep_xla_cache")
  monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", cache)
  monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
