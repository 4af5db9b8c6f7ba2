"""Run tests compile the same tiny model many times (in-process and in subprocesses): share a
persistent XLA compilation cache between them."""
import os
import tempfile

import jax

_CACHE = os.path.join(tempfile.gettempdir(), f"prompt_tuning_test_xla_cache_{os.getuid()}")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _CACHE)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
