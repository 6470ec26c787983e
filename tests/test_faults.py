"""Faults: nothing lost, nothing silent, every bad input one line.

One test per item of the fault battery's report (numbered as there), then a table of careless
command lines run as subprocesses: each must exit with code 2, one line on stderr naming the
problem, no traceback, within two minutes, and leave an existing run's files unchanged.
"""

import concurrent.futures
import glob
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from helpers import copy_run, smoke_config

from fire import data as fire_data
from fire import workdir as workdir_lib
from fire.checkpoint import Checkpointer
from fire.data import pipeline
from fire.data.config import check_relations
from fire.data.token_cache import SplitTokens
from fire.encodings import LengthError
from fire.errors import ConfigError, NonFiniteLossError, UserError
from fire.evaluation import Settings, load_run, score_length, sweep
from fire.model import ModelConfig, Transformer
from fire.training import build, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = Settings(fire_data.Protocol(eval_tokens=256), batch_tokens=256)


@pytest.fixture(scope="module")
def trained(trained_run):
    """``(config, workdir)`` of a finished 8-step run (checkpoints 4 and 8); tests copy it."""
    return trained_run("fire")


def snapshot(folder) -> dict:
    """``{relative path: (size, mtime)}`` of every file under ``folder``."""
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            st = os.stat(path)
            files[os.path.relpath(path, folder)] = (st.st_size, st.st_mtime_ns)
    return files


def step_folders(workdir) -> list:
    return sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")) if s.isdigit())


def raw_state(config, workdir, step) -> dict:
    """A checkpoint's params and optimizer state read with orbax alone (no checks of ours)."""
    run = build(config)
    abstract = run.abstract_state
    manager = ocp.CheckpointManager(
        os.path.join(workdir, "checkpoints"), options=ocp.CheckpointManagerOptions(read_only=True)
    )
    args = ocp.args.Composite(
        params=ocp.args.StandardRestore(abstract["params"]),
        opt=ocp.args.StandardRestore({"step": abstract["step"], "opt_state": abstract["opt_state"]}),
    )
    restored = manager.restore(step, args=args)
    manager.close()
    return {"params": restored.params, **restored.opt}


def leaves(tree) -> list:
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(jax.device_get(tree))]


def biggest_params_file(step_dir) -> str:
    return max(glob.glob(os.path.join(step_dir, "params", "**", "d", "*"), recursive=True), key=os.path.getsize)


# ------------------------------------------------------------------ 1. keep_checkpoints=0


@pytest.mark.slow
def test_1_keep_checkpoints_zero_on_an_existing_run_deletes_nothing(trained, corpus, tmp_path):
    workdir = copy_run(trained, tmp_path)
    before = snapshot(workdir)
    for keep in (0, -1):
        with pytest.raises(ConfigError, match="keep_checkpoints must be an integer >= 1"):
            train(smoke_config(corpus, keep_checkpoints=keep, num_steps=12), workdir)
    with pytest.raises(ConfigError, match="keep_checkpoints"):
        Checkpointer(workdir, keep=0)
    assert snapshot(workdir) == before


# ------------------------------------------------------------------ 2. the NaN guard


@pytest.mark.slow
def test_2_the_nan_guard_keeps_only_finite_checkpoints_that_can_be_trained_from(corpus, tmp_path):
    workdir = str(tmp_path / "diverged")
    config = smoke_config(corpus, checkpoint_every=1, keep_checkpoints=1, num_steps=12, **{"optimizer.lr": 1e9})
    with pytest.raises(NonFiniteLossError, match="The last good checkpoint is kept \\(step 1 in") as error:
        train(config, workdir)
    # The workdir resumes only its own config: the advice is a new one from these weights.
    assert f"start a new --workdir with --config.init_from={workdir}" in str(error.value)
    kept = step_folders(workdir)
    assert kept == [1]
    for step in kept:  # what the kept checkpoint holds, read without the reader's own checks
        assert all(np.isfinite(x).all() for x in leaves(raw_state(config, workdir, step)) if x.dtype.kind == "f")
    # The advised recovery works: its weights with a sane learning rate train.
    final = train(smoke_config(corpus, init_from=workdir, num_steps=3), str(tmp_path / "recovered"))
    assert math.isfinite(final["loss"])


# ------------------------------------------------------------------ 3. one process per workdir


def test_3_a_workdir_takes_one_training_process(trained, corpus, tmp_path, capsys):
    workdir = copy_run(trained, tmp_path)
    before = snapshot(workdir)
    with workdir_lib.exclusive(workdir, log=print):  # another process's run, as far as train() sees
        with pytest.raises(UserError, match=f"in use by another training process \\(pid {os.getpid()} on host "):
            train(smoke_config(corpus, pe="rope"), workdir)  # even with another encoding
    assert snapshot(workdir) == before  # the lock is gone with its holder
    # A lock left by a process that died (SIGKILL) is taken over, with a message.
    with open(os.path.join(workdir, workdir_lib.LOCK), "w") as f:
        json.dump({"pid": 999999, "host": "gone", "since": 0}, f)
    train(trained[0], workdir)
    out = capsys.readouterr().out
    assert "Took over the lock" in out and "pid 999999 on host gone" in out
    assert not os.path.exists(os.path.join(workdir, workdir_lib.LOCK))


# ------------------------------------------------------------------ 4. data position against step


@pytest.mark.slow
def test_4_a_data_position_that_disagrees_with_its_step_is_not_resumed(trained, corpus, tmp_path, capsys):
    workdir = copy_run(trained, tmp_path)
    data_file = os.path.join(workdir, "checkpoints", "8", "data", "metadata")
    with open(data_file) as f:
        position = json.load(f)
    with open(data_file, "w") as f:
        json.dump({**position, "step": 5}, f)
    train(trained[0], workdir)
    out = capsys.readouterr().out
    assert "Checkpoint step 8" in out and "its data position is step 5, not 8" in out
    assert f"Resumed from {workdir}/checkpoints at step 4." in out
    assert os.path.isdir(os.path.join(workdir, "damaged_checkpoints", "8"))  # kept, aside
    # Steps 5..8 ran again on the right batches: the same parameters as the run that was not damaged.
    for a, b in zip(leaves(raw_state(trained[0], trained[1], 8)), leaves(raw_state(trained[0], workdir, 8))):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ 5. damaged newest checkpoint


def _truncate(step_dir):
    with open(biggest_params_file(step_dir), "r+b") as f:
        f.truncate(100)


def _delete(step_dir):
    os.remove(biggest_params_file(step_dir))


def _garble(step_dir):  # the file still reads: only the checksum saved with it tells
    path = biggest_params_file(step_dir)
    data = bytearray(open(path, "rb").read())
    data[1000:1016] = bytes(b ^ 0xFF for b in data[1000:1016])
    open(path, "wb").write(data)


@pytest.mark.parametrize(
    "damage", [pytest.param(_truncate, marks=pytest.mark.slow), pytest.param(_delete, marks=pytest.mark.slow), _garble]
)
def test_5_a_damaged_newest_checkpoint_falls_back_to_the_older_step(trained, tmp_path, capsys, damage):
    workdir = copy_run(trained, tmp_path)
    damage(os.path.join(workdir, "checkpoints", "8"))
    lines = []
    rows = sweep([workdir], ["64"], FAST, str(tmp_path / "out"), log=lines.append)
    assert rows[0]["step"] == 4 and math.isfinite(rows[0]["loss"])
    assert any(f"Checkpoint step 8 of {workdir} cannot be used" in line and "using step 4" in line for line in lines)
    if damage is _truncate:  # the trainer: moved aside with its reason, resumed from step 4
        capsys.readouterr()
        train(trained[0], workdir)
        out = capsys.readouterr().out
        assert f"moved it to {workdir}/damaged_checkpoints/8. Resuming from step 4." in out
        assert "Requested byte range" in out  # the reason, in one line
        assert step_folders(workdir) == [4, 8]


# ------------------------------------------------------------------ 6. Ctrl-C


def _signal_at(monkeypatch, step, count):
    """Sends this process ``count`` SIGINTs when the trainer asks for the batch of ``step``."""
    original = pipeline.TrainIterator.__next__

    def next_or_interrupt(self):
        if self.step == step:
            for _ in range(count):
                os.kill(os.getpid(), signal.SIGINT)
        return original(self)

    monkeypatch.setattr(pipeline.TrainIterator, "__next__", next_or_interrupt)


@pytest.mark.slow
def test_6_ctrl_c_saves_at_the_step_boundary_and_a_second_stops_at_once(trained, corpus, tmp_path, monkeypatch):
    once, twice = copy_run(trained, tmp_path, "once"), copy_run(trained, tmp_path, "twice")
    config = smoke_config(corpus, num_steps=16, **{"optimizer.decay_steps": 8})  # the 8-step run extended
    handler_before = signal.getsignal(signal.SIGINT)  # SIG_IGN in a shell's background job
    _signal_at(monkeypatch, 10, 1)
    with pytest.raises(KeyboardInterrupt, match="saved step 1[01]; re-run the same command to resume"):
        train(config, once)
    assert step_folders(once)[-1] in (10, 11)  # the step during which Ctrl-C came
    _signal_at(monkeypatch, 10, 2)
    with pytest.raises(KeyboardInterrupt, match="a second Ctrl-C"):
        train(config, twice)
    assert step_folders(twice) == [4, 8]
    assert signal.getsignal(signal.SIGINT) == handler_before  # handlers restored
    # On the command line: one line, exit code 130, no traceback.
    script = "from fire.cli import report_user_errors\nreport_user_errors(lambda: (_ for _ in ()).throw(KeyboardInterrupt('saved step 7')))"
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (130, "interrupted: saved step 7\n")


def test_6_a_preempted_run_exits_143_on_the_command_line():
    """A run stopped by SIGTERM saved its checkpoint but is not finished: 128 + SIGTERM, one line
    (the subprocess run and its resume: tests/test_train.py's SIGTERM test)."""
    script = (
        "from fire.cli import report_user_errors\nfrom fire.errors import Preempted\n"
        "report_user_errors(lambda: (_ for _ in ()).throw(Preempted('saved step 7; re-run the same command', 7)))"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (143, "preempted: saved step 7; re-run the same command\n")


# ------------------------------------------------------------------ 7. metrics once per step


@pytest.mark.slow
def test_7_metrics_and_tensorboard_hold_each_step_once_across_resumes(trained, tmp_path):
    from fire.training.metrics import scalars

    workdir = copy_run(trained, tmp_path)
    shutil.rmtree(os.path.join(workdir, "checkpoints", "8"))  # killed after logging 5..8, before saving 8
    train(trained[0], workdir)  # resumes at 4: steps 5..8 run and are logged again
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    keys = [(r["step"], k) for r in rows for k in r if k not in ("step", "time")]
    assert len(keys) == len(set(keys)) and sorted({r["step"] for r in rows}) == list(range(1, 9))
    events = [(step, tag) for step, tag, _ in scalars(workdir)]
    assert len(events) == len(set(events)) and {s for s, _ in events} == set(range(1, 9))
    assert len(glob.glob(os.path.join(workdir, "events.out.tfevents.*"))) == 2


# ------------------------------------------------------------------ 8. text_dir input


def test_8_text_dir_refuses_an_empty_path_and_a_bom_is_not_text(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # *.txt files in the current folder must not become the corpus
    for name in ("a.txt", "b.txt", "c.txt"):
        (tmp_path / name).write_text("text in the current folder " * 50)
    cfg = fire_data.default_config()
    cfg.update(name="text_dir", path="", data_dir=str(tmp_path / "cache"))
    with pytest.raises(fire_data.DataError, match="needs --config.data.path"):
        fire_data.open_corpus(cfg)
    with pytest.raises(fire_data.DataError, match="needs --config.data.path"):
        check_relations(cfg)  # what train's checks ask of the data block
    root = tmp_path / "bom"
    texts = {"train": ["first document", "second one"], "validation": ["held out"]}
    for split, docs in texts.items():
        (root / split).mkdir(parents=True)
        for i, text in enumerate(docs):
            (root / split / f"{i}.txt").write_bytes(b"\xef\xbb\xbf" + text.encode())
    cfg.path = str(root)
    tok = fire_data.get_tokenizer(cfg)
    fire_data.prepare(cfg, tok)
    stats = fire_data.corpus_stats(cfg, tok)
    assert stats["train"]["bytes"] == sum(len(t) for t in texts["train"])
    windows = fire_data.eval_windows(cfg, tok, 4, fire_data.Protocol(eval_tokens=4))
    assert tok.decode(windows.targets[0]) == "held"  # not a byte-order mark


# ------------------------------------------------------------------ 9. learned positions


@pytest.mark.slow
def test_9_learned_refuses_position_ids_past_its_table():
    cfg = ModelConfig.from_size("tiny", vocab_size=259, train_len=16, pe="learned")
    model, tokens = Transformer(cfg), jnp.zeros((1, 8), jnp.int32)
    params = model.init(jax.random.key(0), tokens)["params"]
    logits = model.apply({"params": params}, tokens, jnp.arange(8)[None] + 8)  # ids up to 15: the table's last
    assert bool(jnp.isfinite(logits).all())
    with pytest.raises(LengthError, match="table of 16 positions and cannot model position id 16"):
        model.apply({"params": params}, tokens, jnp.arange(8)[None] + 9)
    with pytest.raises(LengthError, match="table of 16 positions"):  # the same error as a long window
        model.apply({"params": params}, jnp.zeros((1, 17), jnp.int32))


# ------------------------------------------------------------------ 10. a full disk, as one line


def _cli(args, timeout=120):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1", "JAX_PLATFORMS": "cpu"}
    t0 = time.perf_counter()
    result = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    return result, time.perf_counter() - t0


# Runs a command line whose files may not grow past 100 kB: a full disk, portably (writes fail
# with EFBIG instead of ENOSPC). Set in the child itself: no fork hook in a threaded parent.
FULL_DISK = """
import resource, runpy, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _train_flags(config, workdir) -> list:
    return [
        "train.py", f"--config=configs/lm.py:pe={config.pe},data=text_dir,smoke", f"--workdir={workdir}",
        f"--config.data.path={config.data.path}", f"--config.data.data_dir={config.data.data_dir}",
        "--config.batch_size=8", "--config.num_steps=8", "--config.log_every=1", "--config.eval_every=0",
        "--config.checkpoint_every=4",
    ]  # fmt: skip


@pytest.mark.slow
def test_10_a_full_disk_during_a_save_is_one_line(trained, tmp_path):
    workdir = str(tmp_path / "full")
    result, _ = _cli(["-c", FULL_DISK, *_train_flags(trained[0], workdir)], timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.startswith("error: Saving a checkpoint to "), result.stderr[:4000]
    assert result.stderr.count("\n") == 1, result.stderr[:4000]
    assert "File too large" in result.stderr and "re-run the same command" in result.stderr


# ------------------------------------------------------------------ 11. values validated


@pytest.mark.parametrize(
    "key,value",
    [("checkpoint_every", 0), ("log_every", 0), ("peak_flops", 0.0), ("seed", -1), ("keep_checkpoints", -1),
     ("batch_size", 0), ("optimizer.lr", -1e-3), ("optimizer.warmup_steps", -5), ("eval_every", -1),
     ("grad_accum_steps", 0), ("optimizer.schedule", "exponential"), ("model.block_size", 0),
     ("encoding.mlp_width", 0), ("train_positions.max_position", -1), ("data.num_workers", -1), ("mesh.data", 0)],
)  # fmt: skip
def test_11_every_value_is_checked_before_any_compute_or_write(corpus, tmp_path, key, value):
    workdir = tmp_path / "run"
    with pytest.raises(UserError, match=key.split(".")[-1]):
        train(smoke_config(corpus, **{key: value}), str(workdir))
    assert not workdir.exists()


def test_11_the_checks_run_once_per_train(trained, tmp_path, monkeypatch):
    from fire import config as fire_config

    calls = []
    check = fire_config.check
    monkeypatch.setattr(fire_config, "check", lambda config: calls.append(1) or check(config))
    train(trained[0], copy_run(trained, tmp_path))  # finished already: checked, built, resumed, done
    assert len(calls) == 1


# ------------------------------------------------------------------ 12. a failed first start


@pytest.mark.slow
def test_12_a_failed_first_start_does_not_tie_the_workdir_to_its_config(corpus, tmp_path, capsys):
    workdir = str(tmp_path / "run")
    with pytest.raises(NonFiniteLossError):  # fails after writing config.json, before any checkpoint
        train(smoke_config(corpus, checkpoint_every=100, **{"optimizer.lr": 1e9}), workdir)
    assert workdir_lib.is_run(workdir) and not step_folders(workdir)
    final = train(smoke_config(corpus, num_steps=2), workdir)  # the corrected command
    assert math.isfinite(final["loss"]) and "saved no checkpoint; replacing it" in capsys.readouterr().out
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["optimizer"]["lr"] == smoke_config(corpus).optimizer.lr


# ------------------------------------------------------------------ 13. bits per byte


@pytest.mark.slow
def test_13_bits_per_byte_leaves_special_tokens_out_of_loss_and_bytes(trained):
    run = load_run(trained[1])
    eos = run.tokenizer.eos_id
    rng = np.random.default_rng(0)
    docs = [rng.integers(97, 123, rng.integers(3, 12)) for _ in range(60)]  # many short documents
    tokens = np.concatenate([np.append(d, eos) for d in docs]).astype(np.uint16)
    offsets = np.concatenate([[0], np.cumsum([len(d) + 1 for d in docs])])
    split = SplitTokens(tokens, offsets, dict(split="validation", tokenizer="bytes", documents=60, tokens=0))
    windows = fire_data.make_eval_windows(split, run.tokenizer, 32, "stream", 256)
    row = score_length(run, windows, FAST)
    logits = np.asarray(run.model.apply({"params": run.params()}, windows.inputs), np.float64)
    top = logits.max(-1, keepdims=True)
    log_probs = logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_probs, windows.targets[..., None], -1)[..., 0] * windows.weights
    text = windows.targets < 256
    assert (nll[~text] > 0).sum() > 20  # EOS targets are scored...
    np.testing.assert_allclose(row["loss"], nll.sum() / windows.weights.sum(), rtol=1e-5)  # ...in log-perplexity
    assert windows.n_bytes == int((windows.weights * text).sum())  # ...but stand for no bytes
    np.testing.assert_allclose(row["bits_per_byte"], nll[text].sum() / (windows.n_bytes * np.log(2)), rtol=1e-5)


# ------------------------------------------------------------------ 14. the schedule under a resume


def test_14_a_resume_that_moves_the_schedule_end_is_refused(trained, corpus, tmp_path):
    """Resuming the 8-step run with num_steps 16 would stretch its cosine over 16 steps mid-run."""
    workdir = copy_run(trained, tmp_path)
    before = snapshot(workdir)
    with pytest.raises(ConfigError) as refused:
        train(smoke_config(corpus, num_steps=16), workdir)
    message = str(refused.value)
    assert "schedule ends at step 8, and this config's ends at step 16" in message
    assert "--config.optimizer.decay_steps=8 --config.num_steps=16" in message  # either way out
    assert f"--config.init_from={workdir}" in message
    assert snapshot(workdir) == before


def test_14_a_flat_schedule_has_no_end_to_move(trained, corpus, tmp_path):
    """A constant rate (or a decay to min_lr_ratio 1) is the same whatever num_steps: the run
    extends without decay_steps; the same change on the cosine run is refused."""
    from fire.training.resume import check_workdir

    workdir = copy_run(trained, tmp_path)
    config_path = os.path.join(workdir, "config.json")
    with open(config_path) as f:
        original = f.read()
    for flat in ({"optimizer.schedule": "constant"}, {"optimizer.min_lr_ratio": 1.0}):
        saved = json.loads(original)
        ((key, value),) = flat.items()
        saved["optimizer"][key.split(".")[1]] = value
        with open(config_path, "w") as f:
            json.dump(saved, f)
        check_workdir(smoke_config(corpus, num_steps=16, **flat), workdir)  # not refused
    with open(config_path, "w") as f:
        f.write(original)
    with pytest.raises(ConfigError, match="schedule ends at step 8"):
        check_workdir(smoke_config(corpus, num_steps=16), workdir)


@pytest.mark.slow
def test_14_an_extension_with_the_schedule_end_kept_trains_on_at_the_final_rate(trained, corpus, tmp_path):
    from fire.training.optim import learning_rate_schedule

    workdir = copy_run(trained, tmp_path)
    config = smoke_config(corpus, num_steps=12, **{"optimizer.decay_steps": 8})
    train(config, workdir)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        lr = {r["step"]: r["lr"] for r in map(json.loads, f) if "lr" in r}
    # Step s (1-based) is update s - 1: steps 1..8 from the first start, 9..12 from the extension.
    schedule = learning_rate_schedule(trained[0].optimizer, trained[0].num_steps)
    np.testing.assert_allclose([lr[s] for s in range(1, 13)], [float(schedule(s - 1)) for s in range(1, 13)])
    final = config.optimizer.lr * config.optimizer.min_lr_ratio  # reached by update 8, the first of the extension
    assert lr[7] > lr[8] > final
    np.testing.assert_allclose([lr[s] for s in range(9, 13)], final, rtol=1e-6)


# ------------------------------------------------------------------ careless command lines


def _careless_cases(config, workdir, tmp) -> list:
    """``(name, argv, what stderr must name)`` of every careless input; ``workdir`` is an
    existing run that none of them may change."""
    blocker = tmp / "a_file"
    blocker.write_text("not a folder")
    not_spm = tmp / "not_spm.model"
    not_spm.write_text("this is text, not a SentencePiece model")
    binary = tmp / "binary.py"
    binary.write_bytes(bytes(range(256)) * 4)
    for name, payload in (("bin_corpus", os.urandom(3000) + b"\xff\xfe"), ("latin1_corpus", "café".encode("latin-1"))):
        for split in ("train", "validation"):
            (tmp / name / split).mkdir(parents=True)
            (tmp / name / split / "doc.txt").write_bytes(payload * 20)
    train_ = lambda *extra, wd=workdir: _train_flags(config, wd) + list(extra)
    smoke = lambda axes, *extra: ["train.py", f"--config=configs/lm.py:{axes}", f"--workdir={workdir}", *extra]
    evaluate = lambda *extra: ["eval_length.py", f"--workdir={workdir}", f"--output_dir={tmp / 'out'}", *extra]
    fresh = lambda name: str(tmp / name)
    data_flags = lambda path, cache: [f"--config.data.path={path}", f"--config.data.data_dir={cache}"]
    return [
        ("unknown encoding", smoke("pe=bogus"), "pe=bogus"),
        ("unknown size", smoke("size=huge"), "size=huge"),
        ("negative train_len", smoke("train_len=-5"), "train_len"),
        ("train_len not a number", smoke("train_len=abc"), "train_len"),
        ("misspelled key", train_("--config.optimizer.learning_rate=1e-3"), "Did you mean optimizer.lr"),
        ("ill-typed value", train_("--config.num_steps=abc"), "num_steps"),
        ("checkpoint_every 0", train_("--config.checkpoint_every=0"), "checkpoint_every"),
        ("log_every 0", train_("--config.log_every=0"), "log_every"),
        ("peak_flops 0", train_("--config.peak_flops=0"), "peak_flops"),
        ("negative seed", train_("--config.seed=-1"), "seed"),
        ("keep_checkpoints 0", train_("--config.keep_checkpoints=0"), "keep_checkpoints"),
        ("keep_checkpoints -1", train_("--config.keep_checkpoints=-1"), "keep_checkpoints"),
        ("batch_size 0", train_("--config.batch_size=0"), "batch_size"),
        ("negative learning rate", train_("--config.optimizer.lr=-0.001"), "optimizer.lr"),
        ("negative warmup", train_("--config.optimizer.warmup_steps=-5"), "warmup_steps"),
        ("decay ending in warmup", train_("--config.optimizer.warmup_steps=4", "--config.optimizer.decay_steps=4"),
         "decay_steps 4 must be past warmup_steps 4"),
        ("odd Sandwich heads", smoke("pe=sandwich,smoke", "--config.model.head_dim=15"), "got d_head=15"),
        ("unknown dtype", train_("--config.model.dtype=float64"), "dtype"),
        ("unknown schedule", train_("--config.optimizer.schedule=exponential"), "schedule"),
        ("unknown attention", train_("--config.model.attention=flash"), "attention"),
        ("heads not dividing d_model", train_("--config.model.num_heads=3"), "heads"),
        ("block_size 0", train_("--config.model.block_size=0"), "block_size"),
        ("encoding option 0", train_("--config.encoding.mlp_width=0"), "mlp_width"),
        ("mesh past the devices", train_("--config.mesh.data=3"), "devices"),
        ("mesh axis 0", train_("--config.mesh.data=0"), "mesh.data must be an integer >= 1 or -1"),
        ("a bad boolean", train_("--config.encoding.log_transform=maybe"), "must be True or False, got 'maybe'"),
        ("a British spelling", evaluate("--encoding_option=normaliser_cap=512"), "Did you mean normalizer_cap"),
        ("unknown tokenizer", train_("--config.data.tokenizer=bogus"), "tokenizer"),
        ("missing init_from", train_("--config.init_from=/nonexistent/run"), "init_from"),
        ("num_steps past the schedule's end", train_("--config.num_steps=16"), "--config.optimizer.decay_steps=8"),
        ("text_dir without a path", smoke("data=text_dir,smoke"), "data.path"),
        ("workdir is a file", train_(wd=str(blocker)), "is a file"),
        ("workdir under a file", train_(wd=str(blocker / "run")), "under"),
        ("empty workdir", train_(wd=""), "workdir"),
        ("unwritable workdir", train_(wd="/proc/fire_faults_run"), "/proc/fire_faults_run"),
        ("unwritable data cache", train_("--config.data.data_dir=/proc/fire_faults_cache"), "/proc/fire_faults_cache"),
        ("not a SentencePiece model", train_("--config.data.tokenizer=sentencepiece",
                                             f"--config.data.spm_model={not_spm}", wd=fresh("spm")), "SentencePiece"),
        ("binary files", train_(*data_flags(tmp / "bin_corpus", tmp / "cache_bin"), wd=fresh("bin")), "not UTF-8"),
        ("non-UTF-8 text", train_(*data_flags(tmp / "latin1_corpus", tmp / "cache_l1"), wd=fresh("l1")), "not UTF-8"),
        ("binary config file", ["train.py", f"--config={binary}", f"--workdir={workdir}"], "not a Python file"),
        ("missing config file", ["train.py", "--config=configs/nothing.py", f"--workdir={workdir}"], "does not exist"),
        ("stray argument", train_("resume"), "Unexpected arguments"),
        ("lengths not numbers", evaluate("--lengths=64,long"), "--lengths"),
        ("length 0", evaluate("--lengths=0"), "--lengths"),
        ("unknown protocol", evaluate("--protocol=overlap"), "protocol"),
        ("stride 0", evaluate("--protocol=sliding", "--stride=0"), "stride"),
        ("stride past the length", evaluate("--protocol=sliding", "--stride=1000", "--lengths=64"), "stride"),
        ("stride without sliding", evaluate("--stride=8"), "stride"),
        ("eval_tokens 0", evaluate("--eval_tokens=0"), "eval_tokens"),
        ("batch_tokens 0", evaluate("--batch_tokens=0"), "batch_tokens"),
        ("unknown encoding option", evaluate("--encoding_option=bogus=1"), "bogus"),
        ("output folder under a file", evaluate(f"--output_dir={blocker}/out"), "output folder"),
        ("not a run", ["eval_length.py", "--workdir=/nonexistent/run", "--dry_run"], "not a training run"),
        ("missing sweep file", ["sweep.py", "--sweep=configs/sweeps/nothing.py"], "does not exist"),
        ("binary sweep file", ["sweep.py", f"--sweep={binary}", "--dry_run"], "cannot load"),
        ("shard past its count", ["sweep.py", "--sweep=configs/sweeps/cpu_main.py", "--print_commands",
                                  "--shard=5/2"], "--shard"),
    ]  # fmt: skip


@pytest.mark.slow
def test_careless_command_lines_fail_in_one_line(trained, tmp_path):
    workdir = copy_run(trained, tmp_path)
    before = snapshot(workdir)
    cases = _careless_cases(trained[0], workdir, tmp_path)
    assert len(cases) >= 30
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda case: _cli(case[1]), cases))
    failures = []
    for (name, argv, needle), (result, seconds) in zip(cases, results):
        lines = result.stderr.strip().splitlines()
        ok = (
            result.returncode == 2
            and len(lines) == 1
            and lines[0].startswith("error: ")
            and needle.lower() in lines[0].lower()
            and "Traceback" not in result.stdout + result.stderr
            and seconds < 120
        )
        if not ok:
            failures.append(f"{name}: exit {result.returncode} in {seconds:.0f}s, stderr {result.stderr[-1500:]!r}")
    assert not failures, "\n".join(failures)
    assert snapshot(workdir) == before  # the existing run: not a byte changed, no lock left behind
