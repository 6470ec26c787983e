"""The training loop: meshes, processes, kill and resume, bad input."""

import json
import os
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest
from helpers import final_params

from configs import lm
from fire.config import set_dotted
from fire.errors import ConfigError
from fire.training import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def smoke_config(corpus, pe="fire", **overrides):
    config = lm.get_config(f"pe={pe},data=text_dir,smoke")
    config.data.path = str(corpus)
    config.data.data_dir = str(corpus / "_cache")
    config.batch_size = 8
    config.num_steps = 12
    config.log_every = 1
    config.eval_every = 0
    config.checkpoint_every = 4
    for key, value in overrides.items():
        set_dotted(config, key, value)
    return config


def losses(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def finalized_steps(workdir):
    return sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    """The 12-step run on one device that the others must reproduce."""
    workdir = str(tmp_path_factory.mktemp("reference"))
    config = smoke_config(corpus, **{"mesh.data": 1})
    train(config, workdir)
    return config, workdir


@pytest.mark.slow
def test_a_run_writes_what_users_look_at(reference):
    config, workdir = reference
    files = sorted(os.listdir(workdir))
    events = [f for f in files if f.startswith("events.out.tfevents.")]  # TensorBoard's, at the top
    assert len(events) == 1
    assert [f for f in files if f not in events] == ["checkpoints", "code_version.json", "config.json", "metrics.jsonl"]
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    train_rows = [r for r in rows if "loss" in r]
    assert [r["step"] for r in train_rows] == list(range(1, 13))
    assert {"tokens_per_s", "mfu", "lr", "grad_norm", "pe/blocks_0/c", "pe/blocks_1/L"} <= set(train_rows[-1])
    assert train_rows[-1]["loss"] < train_rows[0]["loss"]
    assert any("eval_loss" in r for r in rows)  # validation at the end
    assert finalized_steps(workdir) == [8, 12]


@pytest.mark.parametrize(  # one mesh with every axis by default; the others with -m slow
    "mesh",
    [
        pytest.param(dict(data=8), marks=pytest.mark.slow),
        pytest.param(dict(data=2, fsdp=4), marks=pytest.mark.slow),
        dict(data=2, fsdp=2, tensor=2),
        pytest.param(dict(data=2, tensor=4), marks=pytest.mark.slow),
    ],
)
def test_mesh_shapes_reproduce_the_single_device_run(reference, corpus, tmp_path, mesh):
    _, ref_dir = reference
    config = smoke_config(
        corpus,
        **{f"mesh.{k}": v for k, v in {"data": 1, "fsdp": 1, "tensor": 1, **mesh}.items()},
        num_steps=12,
        checkpoint_every=100,
    )
    train(config, str(tmp_path))
    ref, got = losses(ref_dir), losses(str(tmp_path))
    assert np.allclose([got[s] for s in ref], list(ref.values()), rtol=2e-4), (ref, got)


@pytest.mark.slow
def test_gradient_accumulation_matches_the_full_batch(reference, corpus, tmp_path):
    _, ref_dir = reference
    config = smoke_config(corpus, grad_accum_steps=2, checkpoint_every=100, **{"mesh.data": 2})
    train(config, str(tmp_path))
    ref, got = losses(ref_dir), losses(str(tmp_path))
    assert np.allclose([got[s] for s in ref], list(ref.values()), rtol=2e-4)


def _run_cli(args, env_extra=None, **kwargs):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1", **(env_extra or {})}
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, **kwargs)


def _cli_flags(config, workdir):
    flat = {
        "data.path": config.data.path,
        "data.data_dir": config.data.data_dir,
        "batch_size": config.batch_size,
        "num_steps": config.num_steps,
        "log_every": config.log_every,
        "eval_every": config.eval_every,
        "checkpoint_every": config.checkpoint_every,
    }
    return [
        f"--config=configs/lm.py:pe={config.pe},data=text_dir,smoke",
        f"--workdir={workdir}",
        *(f"--config.{k}={v}" for k, v in flat.items()),
    ]


@pytest.fixture(scope="module")
def cli_reference(reference, tmp_path_factory):
    """The same 12 steps through the command line, in one go (the bitwise reference:
    the in-process run sees 8 fake devices, which changes CPU thread partitioning)."""
    config, _ = reference
    workdir = str(tmp_path_factory.mktemp("cli_reference"))
    result = _run_cli(["train.py", *_cli_flags(config, workdir)])
    assert result.returncode == 0, result.stderr[-2000:]
    return config, workdir


# Kills the process with SIGKILL when the trainer asks for the batch of step 11.
KILLER = """
import os, signal, sys
sys.argv = sys.argv[:1] + sys.argv[2:]
import fire.data.pipeline as pipeline
original = pipeline.TrainIterator.__next__
def next_or_die(self):
    if self.step == 10:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self)
pipeline.TrainIterator.__next__ = next_or_die
import runpy
runpy.run_path("train.py", run_name="__main__")
"""


@pytest.mark.slow
def test_sigkill_then_rerun_gives_identical_parameters(cli_reference, tmp_path):
    config, ref_dir = cli_reference
    workdir = str(tmp_path)
    killed = _run_cli(["-c", KILLER, "train.py", *_cli_flags(config, workdir)])
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    # Step 8's asynchronous save may have been cut off: then the run resumes from step 4.
    saved = finalized_steps(workdir)[-1]
    assert saved in (4, 8)
    resumed = _run_cli(["train.py", *_cli_flags(config, workdir)])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"Resumed from {workdir}/checkpoints at step {saved}" in resumed.stdout
    for a, b in zip(final_params(config, ref_dir), final_params(config, workdir)):
        np.testing.assert_array_equal(a, b)


# Sends itself SIGTERM (a preemption notice) during step 6.
TERMINATOR = KILLER.replace("self.step == 10", "self.step == 6").replace("signal.SIGKILL", "signal.SIGTERM")


@pytest.mark.slow
def test_sigterm_saves_and_the_rerun_finishes_identically(cli_reference, tmp_path):
    config, ref_dir = cli_reference
    workdir = str(tmp_path)
    stopped = _run_cli(["-c", TERMINATOR, "train.py", *_cli_flags(config, workdir)])
    # Not finished: exit 143 (128 + SIGTERM), so `train.py && next-step` stops here.
    assert stopped.returncode == 143, stopped.stderr[-2000:]
    assert "Preempted: saved step" in stopped.stdout
    assert stopped.stderr.startswith("preempted: saved step") and stopped.stderr.count("\n") == 1, stopped.stderr
    saved = finalized_steps(workdir)[-1]
    assert saved in (6, 7)  # the step during which the notice arrived (not a multiple of 4)
    resumed = _run_cli(["train.py", *_cli_flags(config, workdir)])
    assert resumed.returncode == 0 and f"at step {saved}" in resumed.stdout
    for a, b in zip(final_params(config, ref_dir), final_params(config, workdir)):
        np.testing.assert_array_equal(a, b)


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # 22 s: two processes start JAX and compile
def test_two_processes_match_the_single_process_run(reference, corpus, tmp_path):
    config, ref_dir = reference
    workdir = str(tmp_path)
    address = f"localhost:{_free_port()}"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "train.py",
                *_cli_flags(config, workdir),
                f"--coordinator_address={address}",
                "--num_processes=2",
                f"--process_id={i}",
                "--config.checkpoint_every=100",
            ],
            cwd=REPO,
            env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    assert "2 process(es)" in outs[0][0] and "mesh {'data': 2" in outs[0][0]
    ref, got = losses(ref_dir), losses(workdir)
    assert np.allclose([got[s] for s in ref], list(ref.values()), rtol=2e-4)


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "arg,message",
    [
        ("pe=fier", "Unknown position encoding pe=fier. Did you mean fire"),
        ("size=huge", "Unknown model size size=huge"),
        ("train_len=many", "train_len must be an integer"),
        ("pe=fire,lenght=3", "Unknown config axis 'lenght'. Did you mean length"),
    ],
)
def test_bad_sweep_axes(arg, message):
    with pytest.raises(ValueError) as e:
        lm.get_config(arg)
    assert message.split(". Did")[0] in str(e.value)


def test_misspelled_config_key_names_the_nearest():
    config = lm.get_config("")
    with pytest.raises(AttributeError, match='Did you mean "num_steps"'):
        config.num_step = 3


def test_bad_configs_fail_before_compute(corpus, tmp_path):
    with pytest.raises(ConfigError, match="does not divide over the 8-way data axis"):
        train(smoke_config(corpus, batch_size=4, **{"mesh.data": -1}), str(tmp_path / "a"))
    with pytest.raises(ConfigError, match="max_len 32 < train_len 64"):
        train(smoke_config(corpus, pe="learned", **{"encoding.max_len": 32}), str(tmp_path / "b"))
    with pytest.raises(ValueError, match="unknown dataset .no_such_dataset_xyz.: expected one of shakespeare"):
        config = smoke_config(corpus, **{"data.name": "no_such_dataset_xyz"})
        train(config, str(tmp_path / "c"))
    assert not os.path.exists(tmp_path / "a") and not os.path.exists(tmp_path / "b")


def test_workdir_with_another_config_is_refused(reference, corpus):
    _, workdir = reference
    with pytest.raises(ConfigError, match=r"different config \(pe: 'fire' -> 'rope'"):
        train(smoke_config(corpus, pe="rope"), workdir)


def test_cli_reports_one_line_without_traceback(corpus, tmp_path):
    config = smoke_config(corpus)
    result = _run_cli(
        ["train.py", *_cli_flags(config, str(tmp_path)), "--config.batch_size=3", "--config.grad_accum_steps=2"]
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: batch_size 3 does not divide into grad_accum_steps 2")
    assert "Traceback" not in result.stderr
