"""Sweeps: expansion, shards, the runner end to end (train, resume, fail, evaluate,
aggregate) and bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import write_corpus

from fire.sweeps import SweepError, expand, load_sweep, parse_shard, runner, shard_of

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SWEEP = """
import ml_collections

def get_config():
    c = ml_collections.ConfigDict()
    c.name = {name!r}
    c.config = "configs/lm.py"
    c.axes = dict(pe={pes!r}, size=["tiny"], data=["text_dir"], train_len=[32], seed=[0, 1])
    c.overrides = dict(
        model=dict(num_layers=1, d_model=32, num_heads=2, d_ff=64), batch_size=4, num_steps=4,
        checkpoint_every=2, eval_every=0, eval_tokens=256, log_every=2, mesh=dict(data=1),
        data=dict(path={corpus!r}, data_dir={cache!r}), {extra}
    )
    c.variants = {variants}
    c.eval = dict(factors=[1, 2], eval_tokens=256)
    c.eval_variants = {eval_variants}
    c.runs_dir = {runs!r}
    c.output_dir = {out!r}
    return c
"""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    return write_corpus(root, (("train", 3), ("validation", 2)), 600)


def write_sweep(tmp_path, corpus, name="demo", pes=("alibi", "rope_pi"), extra="", variants="{}",
                eval_variants="{}"):  # fmt: skip
    path = tmp_path / f"{name}.py"
    path.write_text(SWEEP.format(name=name, pes=list(pes), corpus=str(corpus), cache=str(corpus / "_cache"),
                                 runs=str(tmp_path / "runs"), out=str(tmp_path / "out"), extra=extra,
                                 variants=variants, eval_variants=eval_variants))  # fmt: skip
    return str(path)


def test_expansion_names_runs_deterministically(tmp_path, corpus):
    specs = expand(load_sweep(write_sweep(tmp_path, corpus)))
    assert [s.name for s in specs] == [
        "alibi/tiny_L32_s0", "alibi/tiny_L32_s1", "rope_pi/tiny_L32_s0", "rope_pi/tiny_L32_s1",
    ]  # fmt: skip
    assert specs == expand(load_sweep(write_sweep(tmp_path, corpus)))
    assert specs[1].command()[:3] == ["python", "train.py", "--config=configs/lm.py:pe=alibi,size=tiny,train_len=32,"
                                                            "data=text_dir"]  # fmt: skip
    assert "--config.seed=1" in specs[1].command() and "--config.model.num_layers=1" in specs[1].command()


@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_shards_cover_every_run_exactly_once(tmp_path, corpus, count):
    specs = expand(load_sweep(write_sweep(tmp_path, corpus, pes=("alibi", "rope_pi", "nope"))))
    taken = [s.name for i in range(count) for s in shard_of(specs, *parse_shard(f"{i}/{count}"))]
    assert sorted(taken) == sorted(s.name for s in specs)
    assert parse_shard(None, {"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "4"}) == (2, 4)


def test_bad_sweeps_fail_in_one_line(tmp_path, corpus):
    with pytest.raises(SweepError, match=r"unknown override or axis 'optimizer.learning_rate'.*Did you mean"):
        expand(load_sweep(write_sweep(tmp_path, corpus, name="a", extra="optimizer=dict(learning_rate=1.0)")))
    with pytest.raises(SweepError, match="no values: the sweep would be empty"):
        expand(load_sweep(write_sweep(tmp_path, corpus, name="b", pes=())))
    for shard in ("4/4", "-1/2", "x"):
        with pytest.raises(SweepError, match="--shard"):
            parse_shard(shard)
    out = tmp_path / "other"
    runner.check_output_dir(str(out), "first")
    with pytest.raises(SweepError, match="holds the results of sweep 'first'"):
        runner.check_output_dir(str(out), "second")


def cli(*args):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "sweep.py", *args], cwd=REPO, env=env, capture_output=True, text=True)


@pytest.mark.slow
def test_a_sweep_trains_resumes_survives_a_failure_evaluates_and_aggregates(tmp_path, corpus):
    variants = "[('ok', dict(pe='alibi')), ('broken', dict(pe='alibi', optimizer=dict(schedule='bogus')))]"
    path = write_sweep(tmp_path, corpus, pes=("alibi",), variants=variants)
    specs = expand(load_sweep(path))
    assert [s.name for s in specs] == ["ok/tiny_L32_s0", "ok/tiny_L32_s1", "broken/tiny_L32_s0", "broken/tiny_L32_s1"]

    # Worker 0 of 2 trains its share only, and evaluates nothing.
    first = cli(f"--sweep={path}", "--shard=0/2")
    assert first.returncode == 1 and "FAILED broken/tiny_L32_s0" in first.stdout, first.stdout + first.stderr
    assert "broken/tiny_L32_s0: see" in first.stderr and "Traceback" not in first.stderr
    assert [runner.status(s) for s in specs] == ["done", "new", "new", "new"]
    done_ckpt = os.path.getmtime(os.path.join(specs[0].workdir, "checkpoints"))

    # The whole sweep: the finished run is skipped, the failure reported again, the rest done.
    second = cli(f"--sweep={path}")
    assert second.returncode == 1, second.stdout + second.stderr
    assert "4 run(s): 1 done, 3 to train." in second.stdout
    assert os.path.getmtime(os.path.join(specs[0].workdir, "checkpoints")) == done_ckpt
    assert [runner.status(s) for s in specs] == ["done", "done", "new", "new"]

    out = tmp_path / "out"
    assert {"results.md", "results.csv", "results.json", "length_curve.png", "sweep.json", "per_run"} <= set(
        os.listdir(out)
    )
    results = json.loads((out / "results.json").read_text())
    seeds, aggregates = results["runs"], results["aggregates"]
    assert sorted((r["seed"], r["eval_len"]) for r in seeds) == [(0, 32), (0, 64), (1, 32), (1, 64)]
    for a in aggregates:
        losses = [r["loss"] for r in seeds if r["eval_len"] == a["eval_len"]]
        assert a["row"] == "ok" and a["n"] == 2
        np.testing.assert_allclose(a["loss"], np.mean(losses), rtol=1e-12)
        np.testing.assert_allclose(a["loss_std"], np.std(losses, ddof=1), rtol=1e-9)
    md = (out / "results.md").read_text()
    assert "## tiny, training length 32" in md and "| ok | " in md and "± " in md and "(2)" in md
    assert "protocol stream" in md

    # Evaluation again: every row reused.
    third = cli(f"--sweep={path}", "--eval_only")
    assert third.stdout.count("| reused") == 4, third.stdout


@pytest.mark.slow
def test_evaluation_variants_are_rows_of_their_own(tmp_path, corpus):
    eval_variants = "[('pi2', dict(rows=['rope_pi'], encoding=dict(scale=2.0)))]"
    path = write_sweep(tmp_path, corpus, pes=("rope_pi",), eval_variants=eval_variants)
    sweep = load_sweep(path)
    specs = expand(sweep)
    os.chdir(REPO)
    assert runner.train_runs(specs, log=lambda _: None) == {s.name: "done" for s in specs}
    table = runner.evaluate_runs(sweep, specs, log=lambda _: None)
    rows = {(a["row"], a["eval_len"]): a for a in table}
    assert set(rows) == {("rope_pi", 32), ("rope_pi", 64), ("rope_pi [pi2]", 32), ("rope_pi [pi2]", 64)}
    assert rows["rope_pi [pi2]", 32]["loss"] != rows["rope_pi", 32]["loss"]  # positions divided by 2


def test_a_sigterm_to_the_sweep_reaches_the_training_child(tmp_path):
    """A scheduler's SIGTERM goes to the sweep; the child gets it too, saves and exits."""
    import signal
    import threading
    import time

    ready = tmp_path / "child.log"
    child = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(7))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )

    def terminate_when_ready():
        while "ready" not in (ready.read_text() if ready.exists() else ""):
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    threading.Thread(target=terminate_when_ready, daemon=True).start()
    with open(ready, "w") as out:
        code, terminated = runner._train_child([sys.executable, "-c", child], out)
    assert (code, terminated) == (7, True)
    assert signal.getsignal(signal.SIGTERM) == before  # the sweep's own handling is back


def test_length_curve_keeps_eleven_rows_apart():
    """The ablation table has 11 rows: past matplotlib's ten colours, lines change style."""
    from fire.sweeps.aggregate import length_curve

    table = [
        dict(size="tiny", train_len=8, row=f"row{i}", eval_len=L, loss=1.0 + i, loss_std=0.1, n=3)
        for i in range(11)
        for L in (8, 16)
    ]
    lines = length_curve(table).axes[0].get_lines()[:-1]  # the last is the training length's marker
    styles = {(line.get_color(), line.get_linestyle()) for line in lines}
    assert len(lines) == 11 and len(styles) == 11


def test_a_sweep_s_per_run_plots_keep_forty_runs_apart():
    from fire.evaluation.plots import length_curve, position_curve

    curve = {"edges": [0, 8, 16], "tokens": [8, 8], "loss": [1.0, 1.1]}
    rows = [
        dict(label=f"run{i}", eval_len=L, train_len=8, loss=1.0 + i, protocol="stream", position_loss=curve)
        for i in range(40)
        for L in (8, 16)
    ]
    for figure in (length_curve(rows), position_curve(rows)):
        ax = figure.axes[0]
        lines = [line for line in ax.get_lines() if line.get_label().startswith("run")]
        styles = {(line.get_color(), line._unscaled_dash_pattern) for line in lines}  # a custom dash reads as "--"
        assert len(lines) == 40 and len(styles) == 40
        assert ":" not in {line.get_linestyle() for line in lines}  # dotted marks the training length
        assert ax.get_legend().get_bbox_to_anchor().x0 > ax.bbox.x1  # the legend beside the axes
