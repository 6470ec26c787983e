"""Where a result came from: the code, the command and the machine.

Every folder of results records each command that wrote to it as one line of
``provenance.jsonl`` (:func:`record`), and every row it computes carries :func:`row_stamp`
(the code commit and the machine), so a row merged into a folder by a later command keeps
the record of the command that computed it.
"""

import json
import os
import platform
import shlex
import socket
import subprocess
import sys
import time

import fire

PROVENANCE = "provenance.jsonl"
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def code_version() -> dict:
    """``{'fire': version, 'commit': sha, 'dirty': bool}``; the commit and dirtiness only in a
    git checkout (dirty: tracked files differ from the commit)."""
    version = {"fire": fire.__version__}
    try:
        git = lambda *a: subprocess.run(["git", "-C", _REPO, *a], capture_output=True, text=True, timeout=10)
        head = git("rev-parse", "HEAD")
        if head.returncode == 0:
            version["commit"] = head.stdout.strip()
            version["dirty"] = bool(git("status", "--porcelain", "--untracked-files=no").stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return version


def code_label(version: dict) -> str:
    """``'1a2b3c4d'``, ``'1a2b3c4d-dirty'``, or the package version outside a checkout."""
    if "commit" not in version:
        return f"fire {version.get('fire', '?')}"
    return version["commit"][:8] + ("-dirty" if version.get("dirty") else "")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` says."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """The host, its CPU and the accelerators JAX sees (platform, kind, count)."""
    import jax

    devices = jax.devices()
    return dict(host=socket.gethostname(), os=platform.platform(), cpu=cpu_model(), cpu_cores=os.cpu_count(),
                python=platform.python_version(), jax=jax.__version__, backend=devices[0].platform,
                device_kind=devices[0].device_kind, device_count=len(devices),
                process_count=jax.process_count())  # fmt: skip


def machine_label(m: dict) -> str:
    """``'cpu: AMD EPYC 9B14, 2 cores'`` or ``'gpu: 8 x NVIDIA H100 80GB HBM3'``."""
    if m["backend"] == "cpu":
        return f"cpu: {m['cpu']}, {m['cpu_cores']} cores"
    return f"{m['backend']}: {m['device_count']} x {m['device_kind']}"


def command_line() -> str:
    """The command as it was typed (as far as ``sys.argv`` can tell), shell-quoted."""
    return " ".join(shlex.quote(a) for a in [os.path.basename(sys.executable), *sys.argv])


_STAMP = None


def row_stamp() -> dict:
    """The fields every freshly computed result row carries: ``code`` and ``machine`` labels
    (computed once per process)."""
    global _STAMP
    if _STAMP is None:
        _STAMP = dict(code=code_label(code_version()), machine=machine_label(machine()))
    return dict(_STAMP)


def record(output_dir: str, **what) -> None:
    """Appends one line to ``output_dir/provenance.jsonl``: the time, the command, the working
    folder, the code version and the machine, and ``what`` (e.g. the rows computed and reused)."""
    entry = dict(time=time.strftime("%Y-%m-%d %H:%M:%S %Z"), command=command_line(), cwd=os.getcwd(),
                 code=code_version(), machine=machine(), **what)  # fmt: skip
    with open(os.path.join(output_dir, PROVENANCE), "a") as f:
        f.write(json.dumps(entry) + "\n")
