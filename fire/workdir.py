"""A run's folder, its workdir: the only module that names the files in it.

    WORKDIR/
      config.json         the resolved run config (fire.config), written at the first start
      code_version.json   the package version, git commit and whether the tree was dirty
      checkpoints/        orbax steps: parameters, optimizer state and data position
      metrics.jsonl       one JSON object per logged step
      events.out.tfevents.*  TensorBoard event files of the same metrics (at the top, so that
                          `tensorboard --logdir runs` names each run by its folder)
      train.log           the training output, when a sweep runs it
      train.lock          held while a process trains here: its pid and host (removed on exit)
      damaged_checkpoints/  checkpoint steps that could not be read, moved aside (never deleted)

A folder is a training run when it holds ``config.json``.
"""

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import socket
import time
from typing import Callable

import ml_collections

from fire.errors import UserError
from fire.provenance import code_version

CONFIG = "config.json"
CODE_VERSION = "code_version.json"
CHECKPOINTS = "checkpoints"
METRICS = "metrics.jsonl"
LOG = "train.log"
LOCK = "train.lock"
DAMAGED = "damaged_checkpoints"


class WorkdirError(UserError, RuntimeError):
    """A workdir that cannot be used: not a folder, not writable, or in use by another process."""


@dataclasses.dataclass(frozen=True)
class Workdir:
    """Paths inside one run's folder (absolute)."""

    path: str

    def __post_init__(self):
        object.__setattr__(self, "path", os.path.abspath(self.path))

    @property
    def config(self) -> str:
        return os.path.join(self.path, CONFIG)

    @property
    def code_version(self) -> str:
        return os.path.join(self.path, CODE_VERSION)

    @property
    def checkpoints(self) -> str:
        return os.path.join(self.path, CHECKPOINTS)

    @property
    def metrics(self) -> str:
        return os.path.join(self.path, METRICS)

    @property
    def tensorboard(self) -> str:
        """The folder of the TensorBoard event files: the workdir itself."""
        return self.path

    @property
    def log(self) -> str:
        return os.path.join(self.path, LOG)

    @property
    def lock_file(self) -> str:
        return os.path.join(self.path, LOCK)

    @property
    def damaged(self) -> str:
        """Where unreadable checkpoint steps are moved (``damaged_checkpoints/STEP``)."""
        return os.path.join(self.path, DAMAGED)

    def check_usable(self) -> None:
        """Raises WorkdirError, before anything is written, if the folder cannot hold a run: a
        file, a path under a file, or a place this process cannot create or write."""
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise WorkdirError(f"The workdir {self.path} is a file, not a folder.")
        existing = self.path
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing):
            raise WorkdirError(f"The workdir {self.path} would be under {existing}, which is a file.")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise WorkdirError(f"The workdir {self.path} cannot be written: {existing} is not writable.")

    def is_run(self) -> bool:
        return os.path.isfile(self.config)

    def read_config(self) -> ml_collections.ConfigDict:
        """The run's resolved config. Raises WorkdirError (one line) if it cannot be read."""
        return ml_collections.ConfigDict(self.read_config_dict())

    def read_config_dict(self) -> dict:
        """``config.json`` as a dict. Raises WorkdirError, naming the file, if it cannot be
        read or is not a JSON object (a file cut short by a full disk or a kill)."""
        try:
            with open(self.config) as f:
                config = json.load(f)
        except OSError as e:
            raise WorkdirError(f"{self.config} cannot be read: {e.strerror or e}.") from None
        except ValueError as e:
            raise WorkdirError(
                f"{self.config} is not valid JSON ({e}): the file is damaged. Restore it (a sweep's results "
                f"folder keeps a copy in train_logs/RUN/config.json), or move the workdir aside to train afresh."
            ) from None
        if not isinstance(config, dict):
            raise WorkdirError(f"{self.config} does not hold a config (a JSON object): the file is damaged.")
        return config

    def write_run_info(self, config) -> None:
        """``config.json`` and ``code_version.json``, each replaced atomically (a kill or a full
        disk leaves the old file or the new one, never half of one)."""
        os.makedirs(self.path, exist_ok=True)
        write_atomic(self.config, config.to_json_best_effort(indent=2))
        write_atomic(self.code_version, json.dumps(code_version(), indent=2))


def write_atomic(path: str, text: str) -> None:
    """``text`` into ``path`` through a temporary file renamed over it."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            os.remove(tmp)


class WorkdirBusy(WorkdirError):
    """Another live process holds the workdir (or the results folder). The command lines exit
    with 75 (``EX_TEMPFAIL``: try again later), so a scheduler or a sweep can tell it from a
    failure."""

    exit_code = 75


@contextlib.contextmanager
def exclusive(workdir: str, log: Callable[[str], None] = print):
    """Holds the workdir for one process: an exclusive lock on ``train.lock`` holding this
    process's pid, host and start time, released (and the file removed) on any exit. The kernel
    drops the lock of a process that dies, so a lock file left behind by one (SIGKILL) is taken
    over, with a message naming it. Creates the folder if needed (and removes it again if the
    run leaves nothing in it).

    Raises:
      WorkdirBusy: another live process holds the lock (named by its pid and host).
      WorkdirError: the folder cannot be created or written.
    """
    paths = Workdir(workdir)
    paths.check_usable()
    created = not os.path.isdir(paths.path)
    busy = lambda holder: WorkdirBusy(
        f"The workdir {paths.path} is in use by another training process ({holder}); wait for it to finish, "
        f"or stop it, or use another --workdir."
    )
    try:
        with _held(paths.lock_file, busy, log, f"the lock of {paths.path}"):
            yield paths
    finally:
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(paths.path)  # only if empty: a start that failed before writing anything


RESULTS_LOCK = ".lock"  # in a results folder, while a command writes there


@contextlib.contextmanager
def results_lock(folder: str, log: Callable[[str], None] = print):
    """Holds a results folder (``folder/.lock``) while one command reads, merges and rewrites its
    tables, so that two evaluations into one folder cannot each drop the other's rows.

    Raises:
      WorkdirBusy: another live process is writing there (named by its pid and host).
      WorkdirError: the folder cannot be created or written.
    """
    busy = lambda holder: WorkdirBusy(
        f"The results folder {folder} is being written by another process ({holder}); wait for it to finish, "
        f"or use another output folder."
    )
    with _held(os.path.join(folder, RESULTS_LOCK), busy, log, f"the results folder {folder}"):
        yield


@contextlib.contextmanager
def _held(lock_file: str, busy: Callable[[str], WorkdirError], log: Callable[[str], None], what: str):
    """An exclusive ``flock`` on ``lock_file`` holding this process's pid, host and start time,
    released and the file removed on any exit; a file left by a process that died is taken over
    with a message."""
    try:
        os.makedirs(os.path.dirname(lock_file), exist_ok=True)
        fd = _locked(lock_file, busy)
    except OSError as e:
        raise WorkdirError(f"Cannot use {os.path.dirname(lock_file)}: {e.strerror or e}.") from None
    try:
        stale = os.read(fd, 4096).decode(errors="replace").strip()
        if stale:
            log(f"Took over {what} from a process that is no longer running ({_holder(stale)}).")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(dict(pid=os.getpid(), host=socket.gethostname(), since=time.time())).encode(), 0)
        os.fsync(fd)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock_file)  # while still holding the lock: no one can take this file
        os.close(fd)


def _locked(path: str, busy: Callable[[str], WorkdirError]) -> int:
    """An fd of ``path`` holding its exclusive lock (``flock``), else ``busy(holder)`` raised.
    Retries if the file was replaced between open and lock (its holder removed it)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.read(fd, 4096).decode(errors="replace").strip()
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise busy(_holder(holder)) from None
            raise
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # locked a file its holder removed meanwhile: lock the current one


def _holder(text: str) -> str:
    """``pid 123 on host h since 2024-05-01 12:00:00`` from a lock file's JSON."""
    try:
        info = json.loads(text)
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info["since"]))
        return f"pid {info['pid']} on host {info['host']} since {since}"
    except (ValueError, KeyError, TypeError):
        return "holder unknown"


def is_run(path: str) -> bool:
    """Whether ``path`` is a training run's folder."""
    return Workdir(path).is_run()
