"""The peer comparison's protocol, shared by this project's side and the peer's
(x-transformers, PyTorch) and free of either framework, since each side runs in a Python
that lacks the other: the shapes, the vocabulary, how a call is timed, how a side is run,
and how the peer is set up."""

import json
import os
import statistics
import subprocess
import sys
import time

SHAPES = ((512, 6, 8, 512, 8), (256, 4, 4, 256, 8))  # d_model, layers, heads, length, batch
VOCAB = 259  # the project's byte vocabulary (256 bytes and 3 specials); the peer is given the same
# This project's encoding names -> the options of x-transformers' Decoder that build the same
# encoding (learned: the wrapper's absolute position embedding, switched on by name).
PEER_ENCODINGS = {
    "nope": {},
    "learned": {},
    "alibi": {"alibi_pos_bias": True},
    "rope": {"rotary_pos_emb": True},
    "t5": {"rel_pos_bias": True},
}
PEER_PYTHON = ".venv-peer/bin/python"
# The `peer` extra of pyproject.toml, in a virtualenv of its own (PyTorch is never a
# requirement of the project); on machines with a CPU-only torch wheel on disk, pip takes it.
SETUP = "python3 -m venv .venv-peer && .venv-peer/bin/pip install torch==2.13.0 x-transformers==2.31.10"
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def median_seconds(call, steps: int, warmup: int = 3) -> float:
    """The median wall time, in seconds, of ``steps`` calls of ``call()`` after ``warmup``
    untimed ones (the first compiles or fills caches)."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def require_peer(python: str) -> None:
    """Exit with one line saying how to set up the peer if its Python is missing."""
    if not os.path.exists(python):
        sys.exit(f"{python} not found: set up the peer with `{SETUP}` (from the repository root).")


def run_side(python: str, module: str, *args: str) -> dict:
    """Runs ``python -m module args`` with this repository importable and returns the JSON
    object on the last line of its stdout; exits with the command and its stderr's tail if it
    fails (for the peer, with the setup command too)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [_REPO_ROOT, os.environ.get("PYTHONPATH")])))
    cmd = [python, "-m", module, *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        hint = f"\nIs the peer set up? `{SETUP}`" if python != sys.executable else ""
        sys.exit(f"{' '.join(cmd)} failed (exit {done.returncode}):\n{done.stderr[-2000:]}{hint}")
    return json.loads(done.stdout.strip().splitlines()[-1])
