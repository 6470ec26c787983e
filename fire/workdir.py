"""A run's folder, its workdir: the only module that names the files in it.

    WORKDIR/
      config.json         the resolved run config (fire.config), written at the first start
      code_version.json   the package version, git commit and whether the tree was dirty
      checkpoints/        orbax steps: parameters, optimizer state and data position
      metrics.jsonl       one JSON object per logged step
      events.out.tfevents.*  TensorBoard event files of the same metrics (at the top, so that
                          `tensorboard --logdir runs` names each run by its folder)
      train.log           the training output, when a sweep runs it

A folder is a training run when it holds ``config.json``.
"""

import dataclasses
import json
import os
import subprocess

import ml_collections

import fire

CONFIG = "config.json"
CODE_VERSION = "code_version.json"
CHECKPOINTS = "checkpoints"
METRICS = "metrics.jsonl"
LOG = "train.log"


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

    def is_run(self) -> bool:
        return os.path.isfile(self.config)

    def read_config(self) -> ml_collections.ConfigDict:
        with open(self.config) as f:
            return ml_collections.ConfigDict(json.load(f))

    def read_config_dict(self) -> dict:
        with open(self.config) as f:
            return json.load(f)

    def write_run_info(self, config) -> None:
        """``config.json`` and ``code_version.json``."""
        os.makedirs(self.path, exist_ok=True)
        with open(self.config, "w") as f:
            f.write(config.to_json_best_effort(indent=2))
        with open(self.code_version, "w") as f:
            json.dump(code_version(), f, indent=2)


def is_run(path: str) -> bool:
    """Whether ``path`` is a training run's folder."""
    return Workdir(path).is_run()


def code_version() -> dict:
    """The package version and, in a git checkout, its commit and whether it was dirty."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    version = {"fire": fire.__version__}
    try:
        run = lambda *a: subprocess.run(["git", "-C", repo, *a], capture_output=True, text=True, timeout=10).stdout
        version["commit"] = run("rev-parse", "HEAD").strip()
        version["dirty"] = bool(run("status", "--porcelain", "--untracked-files=no").strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return version
