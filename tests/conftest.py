import atexit
import os
import shutil
import sys
import tempfile

# Eight fake CPU devices for the mesh tests; must be set before JAX is imported.
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

# One compilation cache for the whole session, this process and the command lines it starts:
# the suite trains the same micro models in dozens of tests, and an identical program (same
# HLO, flags and devices) is then compiled once and loaded from disk after that, bit for bit
# the same executable. Measured: a smoke run's init and train step compile 4.2 s and 4.8 s,
# then load in 1.0 s and 0.35 s. Removed when the session ends.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="fire-tests-xla-cache-")
    atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
    # An entry cut short (a test kills a process mid-write, or fills its disk) is a cache miss
    # that JAX compiles again; its warning is not the output of the command under test.
    quiet = ["ignore:Error reading persistent compilation cache entry:UserWarning",
             "ignore:Error writing persistent compilation cache entry:UserWarning"]  # fmt: skip
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), *quiet]))

# Tests import the repository's `fire` package (not the unrelated python-fire).
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


# ---------------------------------------------------------------- fixtures shared by the modules

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """The small text_dir corpus the training tests share: 6 training and 2 validation documents
    of 1,500 pseudo-English words; its prepared data and token caches are shared too."""
    from helpers import write_corpus

    return write_corpus(tmp_path_factory.mktemp("corpus"), (("train", 6), ("validation", 2)), 1500)


@pytest.fixture(scope="session")
def trained_run(corpus, tmp_path_factory):
    """``trained_run(pe='fire') -> (config, workdir)``: an 8-step smoke run of that encoding
    (``helpers.smoke_config``: checkpoints at 4 and 8), trained once per session and shared
    by every module. A test that changes a run works on a copy (``helpers.copy_run``)."""
    from helpers import smoke_config

    from fire.training import train

    runs = {}

    def get(pe: str = "fire"):
        if pe not in runs:
            config = smoke_config(corpus, pe)
            workdir = str(tmp_path_factory.mktemp(f"trained_{pe}") / "run")
            train(config, workdir)
            runs[pe] = (config, workdir)
        return runs[pe]

    return get
