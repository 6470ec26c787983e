"""Config keys declared once: the builder's defaults, --print_config's meanings and the checks
read the same tables; misspelled keys and ill-typed values are one line on the command line."""

import os
import subprocess
import sys

import pytest

import fire.encodings
import fire.model.config
from fire import config as fire_config
from fire import keys
from fire.config import declarations, explain, from_axes
from fire.encodings import REGISTRY
from fire.errors import ConfigError
from fire.training.checks import check_config
from fire.workdir import Workdir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(*args):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1", "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def _leaves(config, prefix=""):
    found = []
    for name, value in config.items():
        found += _leaves(value, f"{prefix}{name}.") if hasattr(value, "items") else [f"{prefix}{name}"]
    return found


@pytest.mark.parametrize("pe", sorted(REGISTRY))
def test_every_key_of_every_encoding_is_declared_with_a_meaning_and_accepts_its_default(pe):
    config = from_axes(f"pe={pe},size=small")
    declared = keys.flatten(declarations(pe))
    assert set(_leaves(config)) == set(declared)
    assert all(key.meaning for key in declared.values())
    fire_config.check(config)  # the defaults pass the checks that read the same table


def test_the_builder_reads_the_declared_defaults_and_the_axes():
    config = from_axes("pe=rope,size=small,train_len=128,data=text_dir")
    assert (config.pe, config.size, config.train_len, config.data.name) == ("rope", "small", 128, "text_dir")
    assert (config.model.num_layers, config.model.d_model, config.batch_size, config.optimizer.lr) == (6, 512, 8, 1e-3)
    assert config.optimizer.decay_steps == declarations("rope")["optimizer"]["decay_steps"].default == 0
    assert dict(config.encoding) == {"base": 10000.0}


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("num_steps", 0, "num_steps must be an integer >= 1, got 0 \\(training steps"),
        ("data_seed", -2, "data_seed must be an integer >= -1, got -2 \\(the training stream's order"),
        ("optimizer.b2", 1.0, r"optimizer.b2 must be in \[0, 1\), got 1.0 \(AdamW beta2\)."),
        ("optimizer.lr", float("nan"), "optimizer.lr must be > 0, got nan"),
        ("optimizer.schedule", "cosin", "optimizer.schedule must be one of cosine, linear, constant, got 'cosin' "
                                        r"\(the decay after warmup\). Did you mean cosine\?"),
        ("model.dtype", "float64", "model.dtype must be one of float32, bfloat16, got 'float64'"),
        ("mesh.tensor", 0, "mesh.tensor must be an integer >= 1 or -1, got 0"),
        ("data.train_split", " ", "data.train_split must be a non-empty string"),
        ("encoding.mlp_width", 0, r"encoding.mlp_width must be an integer >= 1, got 0 \(hidden width of f_theta\)"),
        ("encoding.normalizer_cap", -1.0, "encoding.normalizer_cap must be >= 0, got -1.0"),
    ],
)  # fmt: skip
def test_a_value_its_key_does_not_accept_is_one_line_naming_key_bounds_and_meaning(key, value, message):
    config = from_axes("pe=fire,smoke", lock=False)
    fire_config.set_dotted(config, key, value)
    with pytest.raises(ConfigError, match=f"^{message}"):
        fire_config.check(config)


def test_the_checks_build_no_encoding(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("an encoding was built to check a config")

    monkeypatch.setattr(fire.encodings, "build_encoding", refuse)
    monkeypatch.setattr(fire.model.config, "build_encoding", refuse)
    config = from_axes("pe=learned,smoke", lock=False)
    config.mesh.data = 1
    assert check_config(config).shape["data"] == 1
    config.encoding.max_len = 32  # the class's own check still runs: a table shorter than train_len
    with pytest.raises(ConfigError, match="max_len 32 < train_len 64"):
        check_config(config)


def test_print_config_gives_each_key_its_meaning_and_accepted_values():
    lines = dict(line.split(" = ", 1) for line in explain(from_axes("pe=fire")).splitlines())
    assert lines["num_steps"].endswith("# training steps: where the run stops [an integer >= 1]")
    assert "[one of cosine, linear, constant]" in lines["optimizer.schedule"]
    assert "# psi is the log transform (else the identity) [True or False]" in lines["encoding.log_transform"]


def test_british_and_american_spellings_find_each_other():
    assert keys.fold_spelling("normaliser_cap") == keys.fold_spelling("normalizer_cap") == "normalizer_cap"
    assert keys.fold_spelling("colour") == "color" and keys.fold_spelling("centre_of_mass") == "center_of_mass"
    valid = ["encoding.normalizer_cap", "encoding.normal", "model.colour"]
    assert keys.nearest_keys("encoding.normaliser_cap", valid)[0] == "encoding.normalizer_cap"
    assert keys.nearest_keys("model.color", valid)[0] == "model.colour"


# ---------------------------------------------------------------- on the command line


def test_a_bad_boolean_is_one_line_naming_the_key_and_the_accepted_values():
    result = _cli(
        "train.py", "--config=configs/lm.py:pe=fire", "--config.encoding.log_transform=maybe", "--print_config"
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
        "error: --config.encoding.log_transform must be True or False, got 'maybe' "
        "(psi is the log transform (else the identity)).\n"
    )


def test_absl_spellings_of_a_boolean_still_work():
    result = _cli("train.py", "--config=configs/lm.py:pe=fire", "--config.encoding.log_transform=f",
                  "--config.train_positions.randomize=T", "--print_config")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "encoding.log_transform = False " in result.stdout and "train_positions.randomize = True " in result.stdout


def test_an_ill_typed_number_is_one_line_naming_the_key():
    result = _cli("train.py", "--config=configs/lm.py:pe=fire", "--config.num_steps=1e3", "--print_config")
    assert result.returncode == 2
    assert (
        result.stderr
        == "error: --config.num_steps must be an integer >= 1, got '1e3' (training steps: where the run stops).\n"
    )


def test_the_british_spelling_of_a_key_suggests_the_american_one():
    result = _cli("train.py", "--config=configs/lm.py:pe=fire", "--config.encoding.normaliser_cap=64", "--print_config")
    assert result.returncode == 2
    assert "Unknown config key --config.encoding.normaliser_cap. Did you mean encoding.normalizer_cap?" in result.stderr


def test_the_british_spelling_of_an_evaluation_option_suggests_the_american_one(tmp_path):
    Workdir(str(tmp_path / "run")).write_run_info(from_axes("pe=fire,smoke"))  # a run's config, read first
    result = _cli("eval_length.py", f"--workdir={tmp_path / 'run'}", "--encoding_option=normaliser_cap=512",
                  "--lengths=64", "--dry_run", f"--output_dir={tmp_path / 'out'}")  # fmt: skip
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: pe=fire has no option(s) normaliser_cap. Did you mean normalizer_cap?")
