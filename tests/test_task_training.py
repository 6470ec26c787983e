"""Training on a task and scoring it by length: the config axis, the loss on answer tokens,
exact resume, validation, the task sweep, bad input, and the "add a task" recipe."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import final_params

from configs import lm
from fire import tasks as fire_tasks
from fire.config import check_keys, explain, set_dotted, task_of
from fire.errors import ConfigError
from fire.evaluation.runs import EvalError, load_run
from fire.evaluation.scoring import make_score_fn
from fire.evaluation.task_scoring import evaluation_examples, score_task
from fire.evaluation.task_sweep import TaskProtocol, parse_lengths, sweep
from fire.model import token_nll
from fire.model.generate import generate
from fire.tasks import Example, Task, TaskError
from fire.tasks.batches import TaskBatches
from fire.training import build, train
from fire.training.checks import check_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def task_config(axes="task=copy,smoke", **overrides):
    """A micro model on a task: batch 8, 8 steps, checkpoints at 4 and 8, one device."""
    config = lm.get_config(axes)
    config.update(batch_size=8, num_steps=8, log_every=1, eval_every=0, checkpoint_every=4)
    config.mesh.data = 1
    for key, value in overrides.items():
        set_dotted(config, key, value)
    return config


@pytest.fixture(scope="module")
def copy_task_run(tmp_path_factory):
    """8 steps on ``copy`` at lengths 1-4 (rows of the default 1-20's 41 tokens), with a
    validation at the end: 20 examples in batches of 8, the last with 4 padding rows."""
    config = task_config(eval_every=8, **{"task.max_len": 4, "task.eval_examples": 20})
    workdir = str(tmp_path_factory.mktemp("copy") / "run")
    final = train(config, workdir)
    return config, workdir, final


# ------------------------------------------------------------------ the config axis


def test_a_task_axis_sets_the_curriculum_and_a_row_that_holds_it():
    config = lm.get_config("task=addition")
    task = task_of(config)
    assert (task.name, task.reversed, task.index_hints) == ("addition", True, True)
    assert (config.task.min_len, config.task.max_len) == (1, 10)
    # 10 digits with hints: 2 x (10 + 10 + 11) digits and hints, '+', '=', EOS = 65 tokens.
    assert task.max_tokens(10) == 65 and config.train_len == 64
    assert "task.max_len = 10" in explain(config) and "in digits" in explain(config)
    assert lm.get_config("task=addition,train_len=100").train_len == 100
    assert lm.get_config("").task.to_dict() == {"name": ""}  # language modelling
    check_config(task_config())


def _bad(**overrides):
    axes = overrides.pop("axes", "task=copy,smoke")
    return lambda: check_config(task_config(axes, **overrides))


@pytest.mark.parametrize(
    "make,error,message",
    [
        (lambda: lm.get_config("task=additon"), TaskError, "Unknown task task=additon. Did you mean addition"),
        (lambda: lm.get_config("task=copy,data=c4/en"), ConfigError, "trains on its own examples, not on data=c4/en"),
        (_bad(**{"task.min_len": 12, "task.max_len": 5}), TaskError, "task.min_len 12 is above task.max_len 5"),
        (_bad(**{"task.min_len": 0}), ConfigError, "task.min_len"),
        (_bad(axes="task=addition,smoke", **{"task.max_len": 150}), TaskError, "makes lengths of 1 to 101 digits"),
        (_bad(train_len=30), TaskError, "set --config.train_len=41 or more"),
        (_bad(**{"data.tokenizer": "sentencepiece"}), ConfigError, "drop --config.data.tokenizer"),
        (_bad(**{"task.alphabet_size": 40}), TaskError, "alphabet_size is 2 to 26"),
        (lambda: check_keys(lm.get_config(""), ["task.min_len"]), ConfigError, "a task option, and this run trains"),
    ],
)
def test_bad_task_configs_fail_in_one_line(make, error, message):
    with pytest.raises(error) as e:
        make()
    assert message in str(e.value) and "\n" not in str(e.value)


def test_the_command_line_reports_a_bad_task_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "train.py", "--config=configs/lm.py:task=revrese,smoke", f"--workdir={tmp_path}/w"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip() == (
        "error: Unknown task task=revrese. Did you mean reverse? Valid: " + ", ".join(fire_tasks.REGISTRY) + "."
    )
    assert not os.path.exists(tmp_path / "w")


# ------------------------------------------------------------------ the loss and the step


def _first_step(config):
    run = build(config)
    state = run.init_fn(jax.random.key(config.seed))
    batches = TaskBatches(task_of(config), config.task.min_len, config.task.max_len, config.train_len,
                          config.batch_size, config.seed)  # fmt: skip
    batch = {k: jnp.asarray(v) for k, v in batches(0).items()}
    return run, state, batch


@pytest.mark.slow  # 29 s: two builds and an accumulated step compile
def test_the_loss_is_the_mean_over_the_answer_tokens_with_or_without_accumulation():
    config = task_config()
    run, state, batch = _first_step(config)
    logits = run.model.apply({"params": state["params"]}, batch["inputs"])
    nll = np.asarray(token_nll(logits, batch["targets"]))
    weights = np.asarray(batch["weights"])
    expected = (nll * weights).sum() / weights.sum()  # the prompt and padding weigh nothing
    assert weights.sum() < weights.size / 2 and abs(expected - nll.mean()) > 1e-3
    new_state, metrics = run.train_step(state, batch)
    assert float(metrics["loss"]) == pytest.approx(expected, rel=1e-5)

    # Four micro-batches of two rows whose answers differ in length: the same loss and update.
    accum_run, accum_state, _ = _first_step(task_config(grad_accum_steps=4))
    accum_state, accum_metrics = accum_run.train_step(accum_state, batch)
    assert float(accum_metrics["loss"]) == pytest.approx(expected, rel=1e-5)
    assert float(accum_metrics["grad_norm"]) == pytest.approx(float(metrics["grad_norm"]), rel=1e-4)
    for a, b in zip(jax.tree_util.tree_leaves(new_state["params"]), jax.tree_util.tree_leaves(accum_state["params"])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-6)


@pytest.mark.slow  # 10 s: a build and a decode compile
def test_teacher_forced_exact_match_is_greedy_decoding():
    """A row scores exact (per_row: correct == weight) iff its answer is what greedy decoding
    generates: checked on a model's own greedy continuations, then with one token changed."""
    config = task_config()
    run, state, _ = _first_step(config)
    params = state["params"]
    vocab = task_of(config).vocabulary
    prompt_BxP = np.stack([vocab.encode("abcde>"), vocab.encode("jihgf>")])
    generated_BxN = np.asarray(generate(run.model, params, prompt_BxP, 6).tokens_BxS)[:, 6:]
    rows = np.concatenate([prompt_BxP, generated_BxN], 1)
    weights = np.zeros((2, rows.shape[1] - 1), np.float32)
    weights[:, 5:] = 1.0  # the targets after the prompt
    score = make_score_fn(run.model, "dense", 16, per_row=True)
    wrong = rows.copy()
    wrong[1, 8] = (wrong[1, 8] + 1) % len(vocab.symbols)
    for tokens, exact in ((rows, [True, True]), (wrong, [True, False])):
        *_, correct_B, weight_B = score(params, tokens[:, :-1], tokens[:, 1:], weights)
        assert list(np.asarray(correct_B) == np.asarray(weight_B)) == exact
        assert list(np.asarray(weight_B)) == [6.0, 6.0]


# ------------------------------------------------------------------ a trained task run


def test_a_task_run_logs_validation_and_resumes_exactly(copy_task_run, tmp_path):
    config, workdir, final = copy_task_run
    assert set(final) >= {"eval_loss", "eval_exact_match", "eval_token_accuracy"}
    assert 0 <= final["eval_exact_match"] <= 1 and 0 < final["eval_token_accuracy"] < 1
    # The same 20 examples decoded greedily: the same exact match, padding rows not counted.
    from fire.tasks.base import validation_rng

    task, run = task_of(config), load_run(workdir)
    examples = [task.example(validation_rng(1 + k % 4, k // 4), 1 + k % 4) for k in range(20)]
    greedy = score_task(run.model, run.params(), task, examples, 8)
    assert final["eval_exact_match"] == greedy.exact / 20
    info = json.load(open(os.path.join(workdir, "config.json")))
    assert info["task"]["name"] == "copy"
    # Drop step 8 and train again: it resumes at step 4 and ends on the same parameters.
    resumed = str(tmp_path / "resumed")
    shutil.copytree(workdir, resumed)
    shutil.rmtree(os.path.join(resumed, "checkpoints", "8"))
    train(config, resumed)
    for a, b in zip(final_params(config, workdir), final_params(config, resumed)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow  # 15 s: four lengths decode
def test_the_task_sweep_scores_reuses_and_reports(copy_task_run, tmp_path):
    config, workdir, _ = copy_task_run
    out = str(tmp_path / "out")
    protocol = TaskProtocol(n_examples=12, batch_size=8)
    lines = []
    rows = sweep([workdir], ["1:2", "20", "40"], protocol, out, log=lines.append)
    assert [r["eval_len"] for r in rows] == [1, 2, 20, 40]
    # A row is score_task on the evaluation seed's examples.
    run = load_run(workdir)
    direct = score_task(run.model, run.params(), task_of(config), evaluation_examples(task_of(config), 20, 12, 0), 8)
    row = rows[2]
    assert (row["exact"], row["correct_tokens"], row["n_answer_tokens"]) == (
        direct.exact, direct.correct_tokens, direct.n_answer_tokens
    )  # fmt: skip
    assert row["n_answer_tokens"] == 12 * 21  # 20 items and EOS per answer
    assert (row["task"], row["length_unit"], row["decoding"], row["eval_seed"]) == ("copy", "items", "greedy", 0)
    assert (row["train_min_len"], row["train_max_len"], row["train_examples"]) == (1, 4, 64)
    assert os.path.exists(os.path.join(out, "accuracy_curve.png"))
    table = open(os.path.join(out, "results.md")).read()
    assert "| run | 1* | 2* | 20 | 40 |" in table and "| fire@1-4 |" in table
    again = []
    assert sweep([workdir], ["20"], protocol, out, log=again.append)[0]["exact"] == row["exact"]
    assert again[0].endswith("reused")
    assert len(json.load(open(os.path.join(out, "results.json")))) == 4  # the other lengths stay


def test_the_task_sweep_refuses_bad_input_before_compute(copy_task_run, trained_run, tmp_path):
    _, workdir, _ = copy_task_run
    protocol = TaskProtocol(n_examples=4)
    out = str(tmp_path / "out")
    with pytest.raises(EvalError, match="is a language-modelling run .task=''.: score it with eval_length.py"):
        sweep([trained_run()[1]], ["4"], protocol, out)
    with pytest.raises(EvalError, match="--lengths must be at least 1"):
        parse_lengths(["0"])
    with pytest.raises(EvalError, match="START <= STOP"):
        parse_lengths(["9:3"])
    with pytest.raises(TaskError, match="task=copy has no option.s. depth"):
        sweep([workdir], ["4"], protocol, out, task_options={"depth": 0.5})
    with pytest.raises(EvalError, match="changes task=copy's symbols"):
        sweep([workdir], ["4"], protocol, out, task_options={"alphabet_size": 5})
    with pytest.raises(EvalError, match="the evaluation seed must be >= 0"):
        TaskProtocol(eval_seed=-1)
    with pytest.raises(EvalError, match=r"n_examples \(0\) and batch_size \(64\) must be at least 1"):
        TaskProtocol(n_examples=0)
    assert not os.path.exists(out)
    os.makedirs(out)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump([{"run_path": workdir, "label": "x", "eval_len": 4, "loss": 1.0}], f)
    with pytest.raises(EvalError, match="holds results of eval_length.py"):
        sweep([workdir], ["4"], protocol, out)
    result = subprocess.run(
        [sys.executable, "eval_task.py", f"--workdir={workdir}", "--lengths=4,x", f"--output_dir={out}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --lengths takes integers and ranges START:STOP[:STEP], got 'x'."


# ------------------------------------------------------------------ the "add a task" recipe


@dataclasses.dataclass(frozen=True)
class FirstItem(Task):
    """``length`` letters, then ``?``; the answer is the first letter: the one farthest away."""

    alphabet_size: int = 4  # letters drawn from the first this many

    length_unit = "items"

    def symbols(self) -> tuple:
        return tuple("abcdefgh"[: self.alphabet_size]) + ("?",)

    def max_tokens(self, length: int) -> int:
        return length + 3  # the letters, '?', the answer, EOS

    def example(self, rng, length) -> Example:
        self.check_length(length)
        items = tuple(rng.choice(list("abcdefgh"[: self.alphabet_size]), length))
        return Example(items + ("?",), items[:1])


@pytest.mark.slow  # 16 s: a run trains, two lengths decode
def test_a_task_defined_here_trains_and_is_scored_through_one_register_line(tmp_path):
    fire_tasks.register("first_item", FirstItem)  # the one line of the recipe
    try:
        config = task_config("task=first_item,smoke", num_steps=4)
        assert config.train_len == 22 and config.task.alphabet_size == 4
        workdir = str(tmp_path / "run")
        train(config, workdir)
        rows = sweep([workdir], ["3", "40"], TaskProtocol(n_examples=8), str(tmp_path / "out"), log=lambda _: None)
        assert [(r["task"], r["eval_len"], r["n_answer_tokens"]) for r in rows] == [
            ("first_item", 3, 16), ("first_item", 40, 16),
        ]  # fmt: skip
    finally:
        del fire_tasks.REGISTRY["first_item"]


# ------------------------------------------------------------------ task sweeps

TASK_SWEEP = """
import ml_collections

def get_config():
    c = ml_collections.ConfigDict()
    c.name = "reverse_demo"
    c.config = "configs/lm.py"
    c.axes = dict(pe=["nope", "alibi"], task=["reverse"], seed=[0, 1])
    c.overrides = dict(
        model=dict(num_layers=1, d_model=32, num_heads=2, d_ff=64), batch_size=4, num_steps=3,
        checkpoint_every=3, eval_every=0, log_every=1, mesh=dict(data=1), task=dict(max_len=6, eval_examples=8),
    )
    c.eval = dict(factors=[1, 2], n_examples=6)
    c.runs_dir = {runs!r}
    c.output_dir = {out!r}
    return c
"""


@pytest.mark.slow  # about 40 s: four runs train in their own processes, then eight lengths decode
def test_a_task_sweep_trains_evaluates_and_aggregates_over_seeds(tmp_path):
    from fire.sweeps import expand, load_sweep, results, runner

    path = tmp_path / "sweep.py"
    path.write_text(TASK_SWEEP.format(runs=str(tmp_path / "runs"), out=str(tmp_path / "out")))
    specs = expand(load_sweep(str(path)))
    assert [s.name for s in specs] == ["nope/reverse_tiny_L1-6_s0", "nope/reverse_tiny_L1-6_s1",
                                       "alibi/reverse_tiny_L1-6_s0", "alibi/reverse_tiny_L1-6_s1"]  # fmt: skip
    assert specs[0].config_arg.endswith("train_len=13,data=shakespeare,task=reverse")  # 6 items, '>', 6, EOS
    outcome = runner.train_runs(specs, log=lambda _: None)
    assert set(outcome.values()) == {"done"}, outcome
    table = results.evaluate_runs(load_sweep(str(path)), specs, log=lambda _: None)
    assert [(a["row"], a["eval_len"], a["n"]) for a in table] == [
        ("nope", 6, 2), ("nope", 12, 2), ("alibi", 6, 2), ("alibi", 12, 2),
    ]  # fmt: skip
    runs = json.load(open(tmp_path / "out" / "results.json"))["runs"]
    for a in table:
        seeds = [r["exact_match"] for r in runs if (r["row"], r["eval_len"]) == (a["row"], a["eval_len"])]
        assert a["exact_match"] == pytest.approx(np.mean(seeds)) and a["n_examples"] == 6
        assert a["exact_match_std"] == pytest.approx(np.std(seeds, ddof=1))
    text = open(tmp_path / "out" / "results.md").read()
    assert "# Sweep reverse_demo: exact match by test length" in text
    assert "## reverse, tiny, trained on 1-6 items" in text and "| row | 6 | 12 |" in text
    assert os.path.exists(tmp_path / "out" / "length_curve.png")


def test_task_sweeps_whose_table_would_mix_runs_are_refused(tmp_path):
    from fire.sweeps import SweepError, expand, load_sweep

    path = tmp_path / "sweep.py"
    text = TASK_SWEEP.format(runs=str(tmp_path / "runs"), out=str(tmp_path / "out"))
    path.write_text(text.replace('task=["reverse"]', 'task=["reverse", "copy"]'))
    with pytest.raises(SweepError, match="train on copy, reverse: a sweep's table is of one task"):
        expand(load_sweep(str(path)))
    # Two training ranges that differ only in min_len: the same row length, one cell.
    ranges = tmp_path / "ranges.py"
    ranges.write_text(text.replace("c.axes = dict(", "c.grids = [dict(task=dict(min_len=[1, 3]))]\n    c.axes = dict("))
    with pytest.raises(SweepError, match="would share a cell of the table"):
        expand(load_sweep(str(ranges)))
