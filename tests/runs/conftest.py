"""Run tests compile the same tiny model many times (in-process and in subprocesses): share a
persistent XLA compilation cache between them. `finished_run`: a finished tiny training run."""
import os
import tempfile

import jax
import pytest

_CACHE = os.path.join(tempfile.gettempdir(), f"prompt_tuning_test_xla_cache_{os.getuid()}")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _CACHE)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
  """The MODEL_DIR of a finished 4-step quickstart run (PROMPT_LENGTH 4, batch 8): copy it before
  changing it."""
  from prompt_tuning import train as train_main
  from tests.runs import runs_testlib
  model_dir = tmp_path_factory.mktemp("finished") / "run"
  assert train_main.main(runs_testlib.TINY + ["--gin.BATCH_SIZE=8", f"--gin.MODEL_DIR={model_dir}"]) == 0
  runs_testlib.clear_gin()
  return model_dir
