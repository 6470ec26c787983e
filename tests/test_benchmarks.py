"""The benchmarks run at their smallest settings, outside the installed package, and say how
to set up what they lack; the peer's PyTorch side runs where its virtualenv is set up."""

import fnmatch
import json
import os
import subprocess

import pytest

from benchmarks import peer_protocol

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEER_PYTHON = os.path.join(REPO, peer_protocol.PEER_PYTHON)


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 and later
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)


needs_peer = pytest.mark.skipif(
    not os.path.exists(PEER_PYTHON), reason=f"the peer is not set up: {peer_protocol.SETUP}"
)


@pytest.mark.slow
def test_bias_benchmark_times_every_path(capsys):
    from benchmarks import bias

    bias.main(["--length=32", "--heads=2", "--repeats=1", "--encodings=fire,alibi"])
    rows = [
        line for line in capsys.readouterr().out.splitlines() if line.startswith("| fire") or line.startswith("| alibi")
    ]
    assert [row.split("|")[2].strip() for row in rows] == ["pairwise (MLP)", "pairwise", "table", "pairwise", "table"]


def test_peer_benchmark_without_the_peer_says_how_to_set_it_up(tmp_path):
    from benchmarks import peer

    with pytest.raises(SystemExit, match="set up the peer with `python3 -m venv .venv-peer"):
        peer.main([f"--peer_python={tmp_path}/missing/python"])


def test_peer_benchmark_refuses_an_encoding_or_shape_the_peer_lacks(capsys):
    from benchmarks import peer

    for flag, error in (("--encodings=nope,fire", "the peer has no encoding fire"), ("--d_models=128", "none of")):
        with pytest.raises(SystemExit):
            peer.main([flag])
        assert error in capsys.readouterr().err


def test_a_failing_peer_side_exits_with_its_command_its_error_and_the_setup(tmp_path):
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho \"ModuleNotFoundError: No module named 'x_transformers'\" >&2\nexit 1\n")
    broken.chmod(0o755)
    with pytest.raises(SystemExit) as exit_:
        peer_protocol.run_side(str(broken), "benchmarks.peer_torch", "--steps=1")
    message = str(exit_.value)
    assert "benchmarks.peer_torch --steps=1 failed (exit 1)" in message and "x_transformers" in message
    assert peer_protocol.SETUP in message


def test_the_peer_s_pins_are_the_documented_setup():
    """The ``peer`` extra of pyproject.toml, the setup command the benchmarks print, and the
    one BENCHMARKS.md and the README show, pin the same packages."""
    extra = _pyproject()["project"]["optional-dependencies"]["peer"]
    assert peer_protocol.SETUP.endswith("pip install " + " ".join(extra))
    for doc in ("BENCHMARKS.md", "README.md"):
        with open(os.path.join(REPO, doc)) as f:
            assert peer_protocol.SETUP in f.read(), doc


def test_the_benchmarks_are_not_in_the_installed_package():
    include = _pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    installed = lambda package: any(fnmatch.fnmatchcase(package, pattern) for pattern in include)  # as setuptools
    assert installed("fire") and installed("fire.model")
    assert not installed("benchmarks") and os.path.exists(os.path.join(REPO, "benchmarks", "peer.py"))


@pytest.mark.slow
def test_profile_benchmark_puts_the_step_s_ops_in_categories(capsys):
    from benchmarks import profile

    shape = ["--d_model=32", "--layers=1", "--heads=2"]
    profile.main(["--size=tiny", "--encoding=alibi", "--train_len=32", "--batch=2", "--steps=1", "--top=3", *shape])
    out = capsys.readouterr().out
    assert "d_model 32, 1 layers, 2 heads" in out
    table = dict(
        (row.split("|")[1].strip(), float(row.split("|")[2]))
        for row in out.split("| category |")[1].split("\n\n")[0].splitlines()[2:]
    )
    assert table["matmul"] > 0 and {"attention", "optimizer"} <= set(table)  # tiny ops may print as 0.0 ms
    known = {"matmul", "attention", "norm", "mlp activation", "embedding and logits", "loss", "optimizer", "layout"}
    assert set(table) <= known | {"other"}


def test_profile_reads_op_names_of_fusions_from_their_root():
    from benchmarks.profile import categorize, op_names

    hlo = """HloModule m

%fused_computation (p: f32[4]) -> f32[4] {
  %p = f32[4]{0} parameter(0)
  ROOT %e = f32[4]{0} exponential(%p), metadata={op_name="jit(f)/blocks_0/attention/exp"}
}

ENTRY %main (a: f32[4]) -> f32[4] {
  %a = f32[4]{0} parameter(0)
  ROOT %exp_fusion = f32[4]{0} fusion(%a), kind=kLoop, calls=%fused_computation
}
"""
    names = op_names(hlo)
    assert names["exp_fusion"] == "jit(f)/blocks_0/attention/exp"
    assert categorize("exp_fusion", "jit(f)/jvp(Transformer)/Transformer.hidden/blocks_0/attention/exp") == "attention"
    assert categorize("ynn_fusion.3", "jit(f)/mlp/wi/dot_general") == "matmul"
    assert categorize("transpose_copy_fusion.1", "jit(f)/attention/value/reshape") == "layout"
    assert categorize("multiply_add_fusion.5", "jit(train_step)/add") == "optimizer"
    assert categorize("subtract_exponential_fusion", "jit(train_step)/jvp()/exp") == "loss"
    assert (
        categorize("add_fusion", "jit(train_step)/jvp(Transformer)/Transformer.hidden/blocks_0/mlp_norm/add") == "norm"
    )


def test_step_matmuls_count_the_step_s_flops_by_hand():
    from benchmarks.peer_gap import step_matmuls
    from benchmarks.peer_protocol import VOCAB

    d, layers, heads, T, B = 8, 2, 2, 16, 3
    matmuls = step_matmuls(d, layers, heads, T, B)
    flops = {kind: sum(2 * b * m * k * n for b, m, k, n, _, _ in mms) for kind, mms in matmuls.items()}
    projections = 2 * B * T * (layers * (4 * d * d + 2 * d * 4 * d) + d * VOCAB)
    assert flops["forward"] == flops["input gradient"] == flops["weight gradient"] == projections
    assert flops["attention"] == layers * 6 * 2 * B * heads * T * T * (d // heads)  # 2 forward, 4 backward
    assert {mm[4:] for mm in matmuls["weight gradient"]} == {(True, False)}
    assert {mm[4:] for mm in matmuls["input gradient"]} == {(False, True)}
    assert flops["one attention dot"] == 2 * B * heads * T * T * (d // heads)
    # Operands as stored: the input gradient reads the forward's kernel, the weight gradient
    # the forward's activation, and its product has the kernel's shape.
    from benchmarks.peer_gap import _operand_shapes

    for fwd, dx, dw in zip(matmuls["forward"], matmuls["input gradient"], matmuls["weight gradient"]):
        x_shape, kernel_shape = _operand_shapes(*fwd)
        assert _operand_shapes(*dx)[1] == kernel_shape and _operand_shapes(*dx)[0] == (1, B * T, fwd[3])
        assert _operand_shapes(*dw)[0] == x_shape and (dw[1], dw[3]) == kernel_shape[1:]
    S, O, dP, dV, dQ, dK = matmuls["attention"][:6]
    assert [mm[4:] for mm in (S, O, dP, dV, dQ, dK)] == [
        (False, True),
        (False, False),
        (False, True),
        (True, False),
        (False, False),
        (True, False),
    ]
    assert (S[1], S[3]) == (T, T) and (O[1], O[3]) == (dV[1], dV[3]) == (dQ[1], dQ[3]) == (dK[1], dK[3]) == (
        T,
        d // heads,
    )


@pytest.mark.slow
def test_peer_gap_times_every_part_and_matmul_kind_on_the_jax_side(capsys):
    from benchmarks import peer_gap

    peer_gap.main(["--side=jax", "--shape=32,1,2,16,2", "--steps=1"])
    times = json.loads(capsys.readouterr().out)
    assert set(times["parts"]) == set(peer_gap.PARTS) and set(times["matmuls"]) == set(peer_gap.KINDS)
    assert all(t > 0 for table in times.values() for t in table.values())


def test_peer_gap_without_the_peer_says_how_to_set_it_up(tmp_path):
    from benchmarks import peer_gap

    with pytest.raises(SystemExit, match="set up the peer"):
        peer_gap.main([f"--peer_python={tmp_path}/missing/python"])


def _peer(*args):
    env = dict(os.environ, PYTHONPATH=REPO)
    done = subprocess.run([PEER_PYTHON, *args], capture_output=True, text=True, env=env, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.slow
@needs_peer
def test_the_peer_side_times_its_step_and_prints_one_json_line():
    shape = ["--d_model=32", "--layers=1", "--heads=2", "--length=16", "--batch=2"]
    out = json.loads(_peer("-m", "benchmarks.peer_torch", *shape, "--pe=alibi", "--steps=1", "--warmup=1"))
    assert (out["peer"], out["d_model"], out["layers"], out["length"], out["pe"]) == (
        "x-transformers",
        32,
        1,
        16,
        "alibi",
    )
    assert out["tokens_per_s"] > 0 and out["ms_per_step"] > 0 and out["params"] > 0


@pytest.mark.slow
@needs_peer
def test_peer_gap_and_the_peer_profile_build_the_peer_s_model_through_one_function():
    times = json.loads(_peer("-m", "benchmarks.peer_gap", "--side=torch", "--shape=32,1,2,16,2", "--steps=1"))
    from benchmarks import peer_gap

    assert set(times["parts"]) == set(peer_gap.PARTS) and set(times["matmuls"]) == set(peer_gap.KINDS)
    shape = ["--d_model=32", "--layers=1", "--heads=2", "--length=16", "--batch=2"]
    out = _peer("-m", "benchmarks.profile_peer", *shape, "--steps=1", "--warmup=1")
    assert "| matmul |" in out and "d_model 32, 1 layers, 2 heads" in out
    same = "from benchmarks.peer_torch import TrainingStep, build_model"
    for name in ("peer_gap.py", "profile_peer.py"):
        with open(os.path.join(REPO, "benchmarks", name)) as f:
            assert same in f.read(), name
