"""The data seed: resolution, checks, and resuming runs saved before it existed."""

import json
import os

import pytest
from helpers import write_corpus

from fire.config import from_axes
from fire.errors import ConfigError
from fire.training import train
from fire.training.trainer import check_workdir, data_seed
from fire.workdir import Workdir


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus"), (("train", 4), ("validation", 2)), 800)


def config_for(corpus, pe="fire", **overrides):
    config = from_axes(f"pe={pe},data=text_dir,smoke")
    config.data.path, config.data.data_dir = str(corpus), str(corpus / "_cache")
    config.update_from_flattened_dict(
        {"batch_size": 8, "num_steps": 8, "log_every": 1, "eval_every": 0, "checkpoint_every": 4, "mesh.data": 1,
         **overrides}
    )  # fmt: skip
    return config


def test_data_seed_defaults_to_seed_and_old_workdirs_still_resume(tmp_path):
    config = from_axes("pe=fire,smoke", lock=False)
    config.seed = 3
    assert data_seed(config) == 3
    config.data_seed = 5
    assert data_seed(config) == 5 and config.seed == 3
    # A run saved before data_seed existed is the same run as its default.
    config.data_seed = -1
    Workdir(str(tmp_path)).write_run_info(config)
    saved = Workdir(str(tmp_path)).read_config_dict()
    del saved["data_seed"]
    with open(Workdir(str(tmp_path)).config, "w") as f:
        json.dump(saved, f)
    check_workdir(config, str(tmp_path))
    config.data_seed = 5
    with pytest.raises(ConfigError, match="data_seed: -1 -> 5"):
        check_workdir(config, str(tmp_path))


def test_bad_seeds_fail_before_compute(corpus, tmp_path):
    with pytest.raises(ConfigError, match="seed must be >= 0"):
        train(config_for(corpus, seed=-1), str(tmp_path / "c"))
    with pytest.raises(ConfigError, match="data_seed -2"):
        train(config_for(corpus, data_seed=-2), str(tmp_path / "d"))
    assert not any(os.path.exists(tmp_path / d) for d in "cd")
