import os
import pathlib
import shutil
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).parent))


def pytest_configure(config):
    """One JAX compilation cache for the run, empty at its start: the xdist workers and
    every subprocess the tests start (examples, the notebook, the multi-device scripts)
    inherit it through the environment, so a program one of them compiled is read by the
    others instead of compiled again. Set ``JAX_COMPILATION_CACHE_DIR`` to use another."""
    if hasattr(config, "workerinput") or "JAX_COMPILATION_CACHE_DIR" in os.environ:
        return  # an xdist worker (its controller set it up), or the caller chose a cache
    config._jaxloss_jit_cache = tempfile.mkdtemp(prefix="jaxloss-jit-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = config._jaxloss_jit_cache
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"  # every program (most compile in < 1 s)


def pytest_unconfigure(config):
    cache = getattr(config, "_jaxloss_jit_cache", None)
    if cache is not None:
        os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)
        shutil.rmtree(cache, ignore_errors=True)
