"""Sweeps: expansion, shards, the runner end to end (train, resume, fail, evaluate,
aggregate) and bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from fire.sweeps import SweepError, expand, load_sweep, parse_shard, results, run_config, runner, select, shard_of
from fire.training import train

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
    results.check_output_dir(str(out), "first")
    with pytest.raises(SweepError, match="holds the results of sweep 'first'"):
        results.check_output_dir(str(out), "second")
    (tmp_path / "evaluated").mkdir()
    (tmp_path / "evaluated" / "results.json").write_text("[]")  # an eval_length.py folder, say
    with pytest.raises(SweepError, match=r"holds files of no sweep \(results.json\): its tables would be replaced"):
        results.check_output_dir(str(tmp_path / "evaluated"), "first")
    (out / "sweep.json").write_text('{"swe')
    with pytest.raises(SweepError, match="cannot be read, so the folder's sweep is unknown"):
        results.check_output_dir(str(out), "first")
    bad_variants = [
        ("[('pi', dict(rows=['rope'], pe='rope_pi'))]", "rows names 'rope', which the sweep does not train"),
        ("[('pi', dict(row=['alibi'], pe='rope_pi'))]", "unknown field.*Did you mean rows"),
        ("[('nothing', dict(rows=['alibi']))]", "changes nothing"),
        ("[('two', dict(rows=['alibi', 'rope_pi'], pe='rope'))]", "one source row"),
        ("[('alibi', dict(rows=['rope_pi'], pe='rope'))]", "trains a row 'alibi' already"),
        ("[('cap', dict(rows=['alibi'], encoding=dict(normaliser_cap=8)))]", "pe=alibi has no option"),
        ("[('a b', dict(rows=['alibi'], pe='nope'))]", "the name must be letters"),
    ]
    for k, (variants, message) in enumerate(bad_variants):
        with pytest.raises(SweepError, match=message):  # refused at expansion: before anything trains
            expand(load_sweep(write_sweep(tmp_path, corpus, name=f"v{k}", eval_variants=variants)))


@pytest.mark.slow  # 24 s: the paper sizes' parameters, counted abstractly
def test_shards_balance_the_sweep_s_flops():
    """Most costly first onto the least loaded worker: the paper sweep (8 runs of each of four
    sizes) on 8 workers gives each worker one run of each size, where every 8th run would give
    two workers all the large runs at 2048; on 7 workers one shard must take two of them (10%
    over the mean)."""
    from fire.sweeps import plan

    specs = expand(load_sweep(os.path.join(REPO, "configs", "sweeps", "paper.py")))
    by_shape = {}  # runs of one size and training length cost the same: estimate one of each
    for spec in specs:
        by_shape.setdefault((spec.size, spec.train_len), plan.estimate(spec).flops)
    cost = lambda spec: by_shape[spec.size, spec.train_len]
    for workers in (7, 8):
        shards = [shard_of(specs, i, workers, cost) for i in range(workers)]
        assert sorted(s.name for shard in shards for s in shard) == sorted(s.name for s in specs)
        loads = [sum(map(cost, shard)) for shard in shards]
        assert max(loads) == min(loads) if workers == 8 else max(loads) <= 1.15 * sum(loads) / workers
    every_8th = [sum(map(cost, specs[i::8])) for i in range(8)]
    assert max(every_8th) > 2 * sum(every_8th) / 8  # what plain every-8th sharding did


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
    assert first.returncode == 1 and "broken/tiny_L32_s0: FAILED" in first.stdout, first.stdout + first.stderr
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
    assert "protocol stream" in md and "Measured cost: 2 runs trained in" in md and "whose training logs" not in md
    assert "train.log" in os.listdir(out / "train_logs" / "ok" / "tiny_L32_s0")  # trained by the sweep

    # Evaluation again: every row reused.
    third = cli(f"--sweep={path}", "--eval_only")
    assert third.stdout.count("| reused") == 4, third.stdout


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


# ------------------------------------------------------------------ shards, selections, plans

SLURM = lambda **values: {f"SLURM_ARRAY_TASK_{k}": str(v) for k, v in values.items()}


def test_slurm_job_arrays_of_any_base_and_step_cover_every_run_once(tmp_path, corpus):
    specs = expand(load_sweep(write_sweep(tmp_path, corpus, pes=("alibi", "rope_pi", "nope"))))
    for ids in (range(0, 4), range(1, 5), range(0, 8, 2), range(3, 12, 3), range(1, 9)):  # --array=1-8 among them
        env = lambda i: SLURM(ID=i, MIN=ids[0], MAX=ids[-1], STEP=ids.step, COUNT=len(ids))
        taken = [s.name for i in ids for s in shard_of(specs, *parse_shard(None, env(i)))]
        assert sorted(taken) == sorted(s.name for s in specs), ids
    assert parse_shard(None, SLURM(ID=7, MIN=1, MAX=7, STEP=2)) == (3, 4)  # no COUNT: from MIN, MAX, STEP
    with pytest.raises(SweepError, match=r"SLURM_ARRAY_TASK_MIN=1.*--array=0-2"):  # --array=1,3,8
        parse_shard(None, SLURM(ID=3, MIN=1, MAX=8, STEP=1, COUNT=3))
    with pytest.raises(SweepError, match="counts from 0.*the last of 8 workers is 7/8"):
        parse_shard("8/8")


def test_only_selects_runs_by_row_seed_or_name(tmp_path, corpus):
    specs = expand(load_sweep(write_sweep(tmp_path, corpus, pes=("alibi", "rope_pi", "nope"))))
    names = lambda only: [s.name for s in select(specs, only)]
    assert names("rope_pi") == ["rope_pi/tiny_L32_s0", "rope_pi/tiny_L32_s1"]
    assert names("nope:1, alibi/*_s0") == ["alibi/tiny_L32_s0", "nope/tiny_L32_s1"]  # the sweep's order
    assert names(None) == names("") == [s.name for s in specs]
    with pytest.raises(SweepError, match="names no run of the sweep. Did you mean rope_pi"):
        select(specs, "rope_p")
    with pytest.raises(SweepError, match="after ':' comes a seed"):
        select(specs, "alibi:first")


def test_dry_run_plans_memory_against_a_device_and_measures_a_step(tmp_path, corpus):
    from fire.sweeps import plan

    specs = expand(load_sweep(write_sweep(tmp_path, corpus, pes=("alibi",))))  # two seeds: one shape
    assert plan.parse_device("h100-80gb").memory == 81559 << 20 and plan.parse_device("40GB").memory == 40 * 10**9
    with pytest.raises(SweepError, match="give a size such as 80GiB.*h100-80gb"):
        plan.parse_device("80 gigs")
    lines = []
    assert plan.dry_run(specs, lines.append, memory=True, device=plan.parse_device("h100-80gb")) == []
    assert all("fits 79.65 GiB (h100-80gb)" in line and "h100-80gb-hours at 40% MFU" in line for line in lines[:2])
    lines.clear()
    too_big = plan.dry_run(specs, lines.append, memory=True, device=plan.parse_device("1MiB"), measure=True)
    assert too_big == [s.name for s in specs]
    assert "DOES NOT FIT 1 MiB" in lines[0] and "step " in lines[0] and "s here: " in lines[0]
    assert "2 of 2 runs do not fit 1 MiB per device" in lines[-1] and "of training on this machine" in lines[-2]


def test_the_sweep_progress_line_reads_the_run_s_metrics(tmp_path, corpus, monkeypatch):
    spec = expand(load_sweep(write_sweep(tmp_path, corpus, pes=("alibi",))))[0]
    os.makedirs(spec.workdir)
    with open(os.path.join(spec.workdir, "metrics.jsonl"), "w") as f:
        f.write(json.dumps({"step": 2, "loss": 5.0, "steps_per_s": 0.5, "tokens_per_s": 64.0, "time": 1.0}) + "\n")
        f.write('{"step": 3, "lo')  # a line cut short while it is written
    monkeypatch.setattr(runner, "PROGRESS_EVERY_S", 0.0)
    lines = []
    clock = runner.SweepClock([spec])
    runner.ProgressWatch(spec, "[1/1] x", clock, lines.append).poll()
    assert lines == ["[1/1] x: step 2/4 | 0.1k tok/s | run ETA 4s | sweep ETA 4s"]


def test_the_sbatch_script_renders_and_its_array_tasks_cover_the_sweep(tmp_path, corpus):
    script = os.path.join(REPO, "scripts", "sweep.sbatch")
    directives = [line.split()[1] for line in open(script) if line.startswith("#SBATCH")]
    assert "--signal=B:USR1@300" in directives and "--requeue" in directives
    assert all(d.startswith("--") for d in directives)
    path = write_sweep(tmp_path, corpus, pes=("alibi", "nope"))
    taken = []
    for task in (1, 2):  # sbatch --array=1-2
        env = {**os.environ, **SLURM(ID=task, MIN=1, MAX=2, STEP=1, COUNT=2), "SWEEP": path, "PYTHON": sys.executable,
               "EXTRA_ARGS": "--dry_run", "SLURM_SUBMIT_DIR": REPO, "JAX_PLATFORMS": "cpu"}  # fmt: skip
        out = subprocess.run(["bash", script], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stdout + out.stderr
        taken += [line.split(" | ")[0].split("] ")[1] for line in out.stdout.splitlines() if line.startswith("[")]
    assert sorted(taken) == sorted(s.name for s in expand(load_sweep(path)))


@pytest.mark.parametrize("signal_name, requeued", [("USR1", True), ("TERM", False)])
def test_the_sbatch_script_requeues_at_the_time_limit_but_not_on_a_cancel(tmp_path, signal_name, requeued):
    """SLURM's USR1 before the time limit: sweep.py gets a SIGTERM, saves (exit 143) and the task
    requeues itself; a SIGTERM (scancel) is passed on the same way and not requeued."""
    import signal
    import time

    fake_python = tmp_path / "python"  # a sweep.py that saves and exits 143 when it gets SIGTERM
    fake_python.write_text("#!/bin/bash\ntrap 'sleep 0.2; exit 143' TERM\necho ready > \"$READY\"\n"
                           "for i in $(seq 600); do sleep 0.1; done\n")  # fmt: skip
    fake_scontrol = tmp_path / "scontrol"
    fake_scontrol.write_text('#!/bin/bash\necho "$@" >> "$CALLS"\n')
    for f in (fake_python, fake_scontrol):
        f.chmod(0o755)
    ready, calls = tmp_path / "ready", tmp_path / "calls"
    env = {**os.environ, "PYTHON": str(fake_python), "SCONTROL": str(fake_scontrol), "READY": str(ready),
           "CALLS": str(calls), "SLURM_SUBMIT_DIR": REPO, "SLURM_ARRAY_JOB_ID": "77", "SLURM_ARRAY_TASK_ID": "3"}  # fmt: skip
    task = subprocess.Popen(["bash", os.path.join(REPO, "scripts", "sweep.sbatch")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    deadline = time.monotonic() + 30
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    task.send_signal(getattr(signal, f"SIG{signal_name}"))
    output = task.communicate(timeout=30)[0]
    assert task.returncode == 143, output
    assert (calls.read_text() if calls.exists() else "") == ("requeue 77_3\n" if requeued else ""), output


# ------------------------------------------------------------------ trained runs, shared


# A scale variant of rope_pi, and rope's runs evaluated as rope_pi (another encoding, same parameters).
EVAL_VARIANTS = (
    "[('pi2', dict(rows=['rope_pi'], encoding=dict(scale=2.0))), ('pi_from_rope', dict(rows=['rope'], pe='rope_pi'))]"
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, corpus):
    """A sweep of alibi, rope and rope_pi x seeds 0 and 1, trained (6 runs of 4 steps), with a
    scale variant of rope_pi and rope evaluated as rope_pi (``pe``): ``(root, sweep path)``."""
    root = tmp_path_factory.mktemp("trained")
    path = write_sweep(root, corpus, pes=("alibi", "rope", "rope_pi"), eval_variants=EVAL_VARIANTS)
    for spec in expand(load_sweep(path)):  # in this process: the sweep's own training is tested above
        train(run_config(spec), spec.workdir)
    return root, path


def copy_of(trained, tmp_path, corpus) -> tuple:
    """The trained sweep's runs in ``tmp_path/runs``, and its sweep file pointing there."""
    import shutil

    shutil.copytree(trained[0] / "runs", tmp_path / "runs")
    path = write_sweep(tmp_path, corpus, pes=("alibi", "rope", "rope_pi"), eval_variants=EVAL_VARIANTS)
    sweep = load_sweep(path)
    return sweep, expand(sweep)


@pytest.mark.slow
def test_a_partial_evaluation_merges_into_the_results_without_losing_a_row(trained, tmp_path, corpus):
    import shutil

    sweep, specs = copy_of(trained, tmp_path, corpus)
    os.chdir(REPO)
    full = results.evaluate_runs(sweep, specs, log=lambda _: None)
    out = tmp_path / "out"
    before = json.loads((out / "results.json").read_text())
    assert len(before["runs"]) == 20  # 6 runs + 2 pi2 + 2 pi_from_rope, at 2 lengths

    # A fresh clone: the runs are gone; this machine has trained one shard's run (alibi s0).
    shutil.move(tmp_path / "runs", tmp_path / "runs_elsewhere")
    shutil.copytree(tmp_path / "runs_elsewhere" / "alibi" / "tiny_L32_s0", tmp_path / "runs" / "alibi" / "tiny_L32_s0")
    lines = []
    again = results.evaluate_runs(sweep, specs, log=lines.append)
    after = json.loads((out / "results.json").read_text())
    in_order = lambda rows: sorted(rows, key=lambda r: (r["row"], r.get("run") or "", r["eval_len"]))
    assert in_order(after["runs"]) == in_order(before["runs"]) and in_order(again) == in_order(full)  # all kept
    assert "20 rows: 2 from the runs evaluated now, the rest kept" in lines[-1]

    # A selection (--only) re-scores only its runs.
    shutil.rmtree(tmp_path / "runs")
    shutil.move(tmp_path / "runs_elsewhere", tmp_path / "runs")
    lines.clear()
    results.evaluate_runs(sweep, specs, log=lines.append, only=select(specs, "rope:1"))
    assert "20 rows: 4 from the runs evaluated now" in lines[-1]  # rope s1 and its pi_from_rope row, at 2 lengths

    # Provenance: each command that wrote, each row's code and machine, the runs' training logs.
    entries = [json.loads(line) for line in (out / "provenance.jsonl").read_text().splitlines()]
    assert len(entries) == 3 and {"command", "code", "machine", "time"} <= set(entries[0])
    assert entries[1]["evaluated"] == ["alibi/tiny_L32_s0"]
    assert all(r["code"] and r["machine"] for r in after["runs"])
    logs = sorted(os.listdir(out / "train_logs" / "rope" / "tiny_L32_s1"))  # train.log: where a sweep trained it
    assert logs == ["code_version.json", "config.json", "metrics.jsonl"]

    # Another process writing to the folder holds it: a second evaluation is refused at once.
    from fire.workdir import WorkdirBusy, results_lock

    with results_lock(str(out)):
        with pytest.raises(WorkdirBusy, match="is being written by another process"):
            results.evaluate_runs(sweep, specs, log=lambda _: None)

    # A table that would lose cells (per_run/ gone, rope's runs gone) is refused before any
    # compute, and nothing is written; --prune drops them, saying so.
    shutil.rmtree(out / "per_run")
    shutil.rmtree(tmp_path / "runs" / "rope")
    with pytest.raises(SweepError, match=r"would drop 8 cell\(s\) of .* in row\(s\) rope, pi_from_rope"):
        results.evaluate_runs(sweep, specs, log=lambda _: None)
    assert json.loads((out / "results.json").read_text()) == after and not (out / "per_run").exists()
    lines.clear()
    results.evaluate_runs(sweep, specs, log=lines.append, prune=True)
    assert any(line.startswith("--prune: dropping 8 cell(s)") for line in lines), lines
    pruned = json.loads((out / "results.json").read_text())["runs"]
    assert {r["row"] for r in pruned} == {"alibi", "rope_pi", "rope_pi [pi2]"}


@pytest.mark.slow
def test_evaluation_variants_are_rows_of_their_own(trained, tmp_path, corpus):
    sweep, specs = copy_of(trained, tmp_path, corpus)
    os.chdir(REPO)
    table = results.evaluate_runs(sweep, specs, log=lambda _: None)
    rows = {(a["row"], a["eval_len"]): a for a in table}
    assert {r for r, _ in rows} == {"alibi", "rope", "rope_pi", "rope_pi [pi2]", "pi_from_rope"}
    assert rows["rope_pi [pi2]", 32]["loss"] != rows["rope_pi", 32]["loss"]  # positions divided by 2
    # RoPE-PI trains bit-identically to RoPE: a rope run evaluated as rope_pi is the rope_pi run.
    for L in (32, 64):
        np.testing.assert_allclose(rows["pi_from_rope", L]["loss"], rows["rope_pi", L]["loss"], rtol=1e-6)
    assert rows["pi_from_rope", 64]["loss"] != rows["rope", 64]["loss"]  # past the training length it interpolates
    # (A pe variant named as a trained row is refused at expansion: test_bad_sweeps_fail_in_one_line.)


@pytest.mark.slow
def test_a_run_another_worker_holds_or_finished_is_not_a_failure(trained, tmp_path, corpus):
    from fire.workdir import exclusive

    sweep = load_sweep(write_sweep(tmp_path, corpus, pes=("alibi",)))
    spec = expand(sweep)[0]
    lines = []
    with exclusive(spec.workdir, log=lambda _: None):  # as a live trainer on another worker would
        assert runner.train_runs([spec], log=lines.append) == {spec.name: "busy"}
    assert "in training by another process (its holder is named in" in lines[-1] and "FAILED" not in "".join(lines)
    assert "in use by another training process (pid" in open(os.path.join(spec.workdir, "train.log")).read()

    # Another worker finishes the run while this one's train.py is refused the workdir (exit 75).
    finisher = tmp_path / "finisher.sh"
    finished = trained[0] / "runs" / "alibi" / "tiny_L32_s0"
    finisher.write_text(f"#!/bin/sh\ncp -r {finished}/. {spec.workdir}/\nexit 75\n")
    finisher.chmod(0o755)
    lines.clear()
    assert runner.train_runs([spec], log=lines.append, python=str(finisher)) == {spec.name: "done elsewhere"}
    assert lines[-1].endswith("finished by another worker meanwhile")


def test_a_run_that_exits_preempted_stops_the_sweep_resumably(tmp_path, corpus):
    from fire.errors import Preempted

    specs = expand(load_sweep(write_sweep(tmp_path, corpus, pes=("alibi",))))
    preempted = tmp_path / "preempted.sh"  # a train.py that saved its checkpoint and exited 128 + SIGTERM
    preempted.write_text("#!/bin/sh\nexit 143\n")
    preempted.chmod(0o755)
    with pytest.raises(
        Preempted, match=r"alibi/tiny_L32_s0: the run was preempted and had no checkpoint yet \(exit 143\)"
    ):
        runner.train_runs(specs, log=lambda _: None, python=str(preempted))
