"""The length sweep: losses, protocols, files, resumption and bad input."""

import csv
import dataclasses
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from helpers import copy_run

from configs import lm
from fire import data as fire_data
from fire.data import Protocol
from fire.evaluation import EvalError, Settings, load_run, score_length, scoring, sweep
from fire.evaluation import length_sweep as sweep_module
from fire.evaluation import runs as eval_runs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = Settings(Protocol(eval_tokens=512), batch_tokens=256)


@pytest.fixture(scope="module")
def runs(trained_run, tmp_path_factory):
    """Two smoke runs (train_len 64, 8 steps) on the shared corpus, copied side by side into one
    folder (``ROOT/fire``, ``ROOT/learned``, for the glob tests): ``{'fire': dir, 'learned': dir}``."""
    root = tmp_path_factory.mktemp("eval_runs")
    return {pe: copy_run(trained_run(pe), root, pe) for pe in ("fire", "learned")}


def windows(run, length, protocol="stream", eval_tokens=512, stride=0):
    return fire_data.eval_windows(run.config.data, run.tokenizer, length, Protocol(protocol, eval_tokens, stride))


@pytest.mark.slow
def test_loss_equals_an_independent_per_token_computation(runs):
    run = load_run(runs["fire"])
    w = windows(run, 48)  # not a power of two: windows cut mid-document
    row = score_length(run, w, FAST)
    logits = np.asarray(run.model.apply({"params": run.params()}, w.inputs), np.float64)
    top = logits.max(-1, keepdims=True)
    log_probs = logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_probs, w.targets[..., None], -1)[..., 0]
    expected = (nll * w.weights).sum() / w.weights.sum()
    assert row["n_tokens"] == w.weights.sum() == sum(row["position_loss"]["tokens"])
    np.testing.assert_allclose(row["loss"], expected, rtol=1e-5)
    np.testing.assert_allclose(row["ppl"], np.exp(expected), rtol=1e-5)
    np.testing.assert_allclose(row["bits_per_byte"], (nll * w.weights).sum() / (w.n_bytes * np.log(2)), rtol=1e-5)


@pytest.mark.parametrize("pe", ["fire", "learned"])
def test_dense_and_blockwise_give_the_same_loss(runs, pe):
    run = load_run(runs[pe], block_size=16)  # 4 tiles per window
    dense = score_length(run, windows(run, 64), dataclasses.replace(FAST, attention="dense"))
    blockwise = score_length(run, windows(run, 64), dataclasses.replace(FAST, attention="blockwise"))
    assert (dense["impl"], blockwise["impl"]) == ("dense", "blockwise")
    np.testing.assert_allclose(dense["loss"], blockwise["loss"], rtol=1e-5)


@pytest.mark.slow
def test_auto_attention_is_blockwise_past_one_tile(runs):
    run = load_run(runs["fire"], block_size=32)
    assert score_length(run, windows(run, 32), FAST)["impl"] == "dense"
    assert score_length(run, windows(run, 64), FAST)["impl"] == "blockwise"


@pytest.mark.slow
def test_small_loss_chunks_give_the_same_loss(runs, monkeypatch):
    run = load_run(runs["fire"])
    whole = score_length(run, windows(run, 64), FAST)
    monkeypatch.setattr(scoring, "LOGITS_CHUNK_BYTES", 4 * 320 * 100)  # 100-token chunks, padded
    chunked = score_length(run, windows(run, 64), FAST)
    np.testing.assert_allclose(chunked["loss"], whole["loss"], rtol=1e-6)


def test_sliding_and_stream_agree_when_the_stride_is_the_length(runs):
    run = load_run(runs["fire"])
    stream = score_length(run, windows(run, 64, "stream"), FAST)
    sliding = score_length(run, windows(run, 64, "sliding", stride=64), Settings(Protocol("sliding", stride=64)))
    assert sliding["n_tokens"] == stream["n_tokens"]
    np.testing.assert_allclose(sliding["loss"], stream["loss"], rtol=1e-6)


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_a_sweep_of_two_runs_writes_every_file(runs, tmp_path):
    out = str(tmp_path / "out")
    lines = []
    rows = sweep([runs["learned"], runs["fire"]], ["32", "64", "128"], FAST, out, log=lines.append)
    assert sorted(os.listdir(out)) == [
        "cache.jsonl",
        "fire_bias.png",
        "length_curve.png",
        "position_curve.png",
        "provenance.jsonl",
        "results.csv",
        "results.json",
        "results.md",
    ]
    (entry,) = [json.loads(line) for line in open(os.path.join(out, "provenance.jsonl"))]
    assert entry["rows_computed"] == 6 and "eval_length" not in entry["command"]  # run in-process here
    assert {"commit", "dirty"} <= set(entry["code"]) and entry["machine"]["backend"] == "cpu"
    assert all(r["code"] == entry["code"]["commit"][:8] + ("-dirty" if entry["code"]["dirty"] else "") for r in rows)
    table = read_csv(os.path.join(out, "results.csv"))
    assert [(r["pe"], r["eval_len"]) for r in table] == [
        ("learned", "32"),
        ("learned", "64"),
        ("learned", "128"),
        ("fire", "32"),
        ("fire", "64"),
        ("fire", "128"),
    ]
    assert list(table[0])[:9] == [
        "run",
        "pe",
        "train_len",
        "eval_len",
        "protocol",
        "n_tokens",
        "loss",
        "ppl",
        "bits_per_byte",
    ]
    assert all(r["protocol"] == "stream" and r["train_len"] == "64" for r in table)
    # The learned table has 64 positions: its 128 cell is not applicable, and the sweep goes on.
    na = table[2]
    assert na["loss"] == na["ppl"] == "" and na["note"].startswith("n/a: pe=learned has a table of 64")
    assert all(
        float(r["loss"]) > 0 and float(r["time_s"]) > 0 and float(r["peak_rss_mib"]) > 0
        for i, r in enumerate(table)
        if i != 2
    )
    with open(os.path.join(out, "results.json")) as f:
        saved = json.load(f)
    assert len(saved) == 6 and saved[2]["loss"] is None and saved[3]["position_loss"]["edges"][-1] == 32
    assert [r["loss"] for r in rows] == [r["loss"] for r in saved]
    with open(os.path.join(out, "results.md")) as f:
        md = f.read()
    assert "| learned@64 | " in md and "| n/a |" in md and "protocol stream" in md
    assert "| run | 32 | 64 | 128 |" in md and "512 tokens scored per length" in md
    assert len(lines) == 7 and "n/a" in lines[2] and lines[-1].startswith("Wrote")


@pytest.mark.slow
def test_a_resumed_sweep_computes_only_the_missing_rows(runs, tmp_path, monkeypatch):
    out = str(tmp_path / "out")
    scored = []
    original = sweep_module.score_length

    def score_or_stop(run, w, settings):
        if w.length == 64 and "restart" not in scored:
            raise KeyboardInterrupt  # stopped while the second length runs
        scored.append(w.length)
        return original(run, w, settings)

    monkeypatch.setattr(sweep_module, "score_length", score_or_stop)
    with pytest.raises(KeyboardInterrupt):
        sweep([runs["fire"]], ["32", "64"], FAST, out, log=lambda _: None)
    assert [r["eval_len"] for r in read_csv(os.path.join(out, "results.csv"))] == ["32"]  # kept
    first = read_csv(os.path.join(out, "results.csv"))[0]
    scored.append("restart")
    lines = []
    sweep([runs["fire"]], ["32", "64", "128"], FAST, out, log=lines.append)
    assert scored == [32, "restart", 64, 128]
    assert "reused" in lines[0] and "reused" not in lines[1]
    again = read_csv(os.path.join(out, "results.csv"))
    assert [r["eval_len"] for r in again] == ["32", "64", "128"] and again[0]["loss"] == first["loss"]
    # Another protocol is another measurement.
    sweep([runs["fire"]], ["32"], Settings(Protocol("sliding", eval_tokens=512)), out, log=lambda _: None)
    assert scored[-1] == 32


def test_a_glob_names_every_run(runs):
    root = os.path.dirname(runs["fire"])
    assert eval_runs.expand_workdirs([os.path.join(root, "*")]) == sorted(runs.values())
    with pytest.raises(EvalError, match="matches no training run"):
        eval_runs.expand_workdirs([os.path.join(root, "nothing*")])


# ------------------------------------------------------------------ bad input


def test_a_workdir_without_a_checkpoint_is_refused(runs, tmp_path):
    empty = tmp_path / "untrained"
    empty.mkdir()
    shutil.copy(os.path.join(runs["fire"], "config.json"), empty)
    with pytest.raises(EvalError, match=f"no checkpoint in {empty}: train first"):
        sweep([runs["fire"], str(empty)], ["32"], FAST, str(tmp_path / "out"))
    with pytest.raises(EvalError, match="has no config.json"):
        sweep([str(tmp_path)], ["32"], FAST, str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out")  # refused before any output


def test_runs_with_different_tokenizers_are_refused(runs, tmp_path):
    other = str(tmp_path / "spm")
    shutil.copytree(runs["learned"], other)
    with open(os.path.join(other, "config.json")) as f:
        config = json.load(f)
    config["data"].update(tokenizer="sentencepiece", spm_vocab_size=300)
    with open(os.path.join(other, "config.json"), "w") as f:
        json.dump(config, f)
    with pytest.raises(EvalError, match=r"different tokenizers \(.*fire: bytes, .*spm: spm-"):
        sweep([runs["fire"], other], ["32"], FAST, str(tmp_path / "out"))


def test_an_unwritable_output_folder_is_refused(runs, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(EvalError, match=f"cannot write to the output folder {blocker}/out"):
        sweep([runs["fire"]], ["32"], FAST, str(blocker / "out"))


def test_bad_lengths_are_refused(runs, tmp_path):
    with pytest.raises(EvalError, match="--lengths must be integers"):
        sweep([runs["fire"]], ["32", "long"], FAST, str(tmp_path))
    with pytest.raises(fire_data.DataError, match="eval length 100000 needs 100001 tokens"):
        sweep([runs["fire"]], ["100000"], FAST, str(tmp_path))


def _cli(*args):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    return subprocess.run([sys.executable, "eval_length.py", *args], cwd=REPO, env=env, capture_output=True, text=True)


def test_cli_reports_bad_input_in_one_line(tmp_path):
    result = _cli(f"--workdir={tmp_path}", f"--output_dir={tmp_path / 'out'}")
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip() == f"error: {tmp_path} is not a training run: it has no config.json."


@pytest.mark.slow
def test_cli_dry_run_prints_each_length_and_writes_nothing(runs, tmp_path):
    result = _cli(f"--workdir={os.path.dirname(runs['fire'])}/*", "--lengths=64,256", "--dry_run", "--eval_tokens=512")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 4 and all("XLA plan" in line for line in lines[:3]), lines
    assert "n/a: pe=learned" in lines[3] and "blockwise" not in lines[0]


@pytest.mark.slow
def test_an_evaluation_variant_changes_options_not_parameters(runs):
    plain = load_run(runs["fire"])
    variant = load_run(runs["fire"], encoding_options={"log_transform": False})
    assert variant.variant == " [log_transform=False]" and variant.config.encoding.log_transform is False
    w = windows(plain, 64)
    assert score_length(variant, w, FAST)["loss"] != score_length(plain, w, FAST)["loss"]
    with pytest.raises(EvalError, match="changes the model's parameters"):
        load_run(runs["fire"], encoding_options={"mlp_width": 8})


def test_labels_say_what_differs_from_the_encoding_defaults():
    config = lm.get_config("pe=fire,train_len=128")
    assert eval_runs.describe(config) == "fire@128"
    config.unlock()
    config.encoding.interpolate, config.encoding.L0 = False, 128.0  # L0 at the training length is its default
    assert eval_runs.describe(config) == "fire@128 (interpolate=False)"
    config.name = "FIRE, no interpolation"
    assert eval_runs.describe(config) == "FIRE, no interpolation"


@pytest.mark.slow
def test_a_results_folder_grows_and_globs_reach_nested_runs(runs, tmp_path):
    out = str(tmp_path / "out")
    sweep([runs["fire"]], ["32"], FAST, out, log=lambda _: None)
    sweep([runs["learned"]], ["32", "64"], FAST, out, log=lambda _: None)
    table = read_csv(os.path.join(out, "results.csv"))
    assert [(r["pe"], r["eval_len"]) for r in table] == [("fire", "32"), ("learned", "32"), ("learned", "64")]
    assert not any(os.path.isabs(r["run_path"]) for r in table)  # relative to where the command ran
    nested = tmp_path / "runs" / "tiny_64" / "fire"
    shutil.copytree(runs["fire"], nested)
    assert eval_runs.expand_workdirs([str(tmp_path / "runs" / "**")]) == [str(nested)]


def test_print_config_lists_every_key_with_its_meaning():
    result = subprocess.run([sys.executable, "train.py", "--config=configs/lm.py:pe=fire", "--print_config"],
                            cwd=REPO, capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" = ", 1) for line in result.stdout.splitlines())
    config = lm.get_config("pe=fire")
    keys = [k for k, v in config.items() if not hasattr(v, "items")]
    keys += [f"{b}.{k}" for b, v in config.items() if hasattr(v, "items") for k in v]
    assert set(lines) == set(keys)
    assert "# the threshold's scale" in lines["encoding.L0"] and "# peak learning rate" in lines["optimizer.lr"]


def test_a_run_whose_config_is_cut_short_is_one_line_naming_the_file(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text('{"pe": "fire", "train_len": 1')  # a write cut short by a full disk
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "eval_length.py", f"--workdir={run}", f"--output_dir={tmp_path / 'out'}"],
                         cwd=REPO, env=env, capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith(f"error: {run / 'config.json'} is not valid JSON") and "damaged" in line
