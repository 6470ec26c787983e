"""Randomized positions at evaluation (Ruoss et al. 2023 randomize at test time as in
training): the seeded ids, the length sweep and the task sweep with them, and their refusals."""

import json
import os

import numpy as np
import pytest
from helpers import smoke_config

from fire.data import Protocol
from fire.evaluation import EvalError, Settings, load_run, sweep
from fire.evaluation.scoring import randomized_positions
from fire.training import train

FAST = Settings(Protocol(eval_tokens=512), batch_tokens=256)


def test_randomized_ids_are_sorted_distinct_in_range_and_a_function_of_the_row_alone():
    ids = randomized_positions(3, 16, range(5), 100)
    assert ids.shape == (5, 16) and ids.dtype == np.int32
    assert (np.diff(ids, axis=1) > 0).all() and ids.min() >= 0 and ids.max() < 100
    np.testing.assert_array_equal(randomized_positions(3, 16, [2, 4], 100), ids[[2, 4]])  # any batching
    assert not np.array_equal(randomized_positions(4, 16, range(5), 100), ids)  # the seed matters
    np.testing.assert_array_equal(randomized_positions(0, 8, [0], 8), [np.arange(8)])  # all ids: 0..T-1


@pytest.fixture(scope="module")
def randomized_run(corpus, tmp_path_factory):
    """8 smoke steps with randomized training positions in [0, 256) at train_len 64."""
    config = smoke_config(corpus, **{"train_positions.randomize": True, "train_positions.max_position": 256})
    workdir = str(tmp_path_factory.mktemp("randomized") / "run")
    train(config, workdir)
    return workdir


@pytest.mark.slow  # 20 s: three sweeps compile and score
def test_the_length_sweep_scores_both_ways_as_separate_rows(randomized_run, tmp_path):
    out = str(tmp_path / "out")
    ordinary = sweep([randomized_run], ["128"], FAST, out, log=lambda _: None)[0]
    settings = Settings(Protocol(eval_tokens=512), batch_tokens=256, positions="randomized", position_seed=1)
    randomized = sweep([randomized_run], ["128"], settings, out, log=lambda _: None)[0]
    assert randomized["protocol"] == "stream, randomized positions"
    assert randomized["positions"] == "randomized (sorted sample of [0, 256), seed 1)"
    assert ordinary["positions"] == "0..T-1" and randomized["loss"] != ordinary["loss"]
    # Another batch size draws the same ids for the same windows: the same loss.
    again = sweep([randomized_run], ["128"], Settings(Protocol(eval_tokens=512), batch_tokens=128,
                                                      positions="randomized", position_seed=1),
                  str(tmp_path / "again"), log=lambda _: None)[0]  # fmt: skip
    assert again["loss"] == pytest.approx(randomized["loss"], rel=1e-6)
    rows = json.load(open(os.path.join(out, "results.json")))
    assert sorted(r["protocol"] for r in rows) == ["stream", "stream, randomized positions"]
    assert "# Length generalization: stream, randomized positions" in open(os.path.join(out, "results.md")).read()


def test_randomized_positions_past_max_position_are_refused_before_compute(randomized_run, trained_run, tmp_path):
    settings = Settings(Protocol(eval_tokens=512), positions="randomized")
    with pytest.raises(EvalError, match=r"draw 512 distinct ids from \[0, 256\) \(its train_positions.max_position\)"):
        sweep([randomized_run], ["128", "512"], settings, str(tmp_path / "a"))
    with pytest.raises(EvalError, match="trained without randomized positions"):
        sweep([trained_run()[1]], ["128"], settings, str(tmp_path / "b"))
    with pytest.raises(EvalError, match="positions must be one of ordinary, randomized"):
        Settings(positions="shuffled")
    assert not os.path.exists(tmp_path / "a") and not os.path.exists(tmp_path / "b")


@pytest.mark.slow  # 39 s: a task run trains, then decodes and scores both ways
def test_teacher_forced_task_scoring_equals_greedy_decoding_at_ordinary_positions(tmp_path):
    from test_task_training import task_config

    from fire.config import task_of
    from fire.evaluation.task_scoring import evaluation_examples, score_task, score_task_teacher_forced
    from fire.evaluation.task_sweep import TaskProtocol
    from fire.evaluation.task_sweep import sweep as task_sweep

    config = task_config(num_steps=60, log_every=20, **{"task.max_len": 3, "optimizer.warmup_steps": 5})
    workdir = str(tmp_path / "run")
    train(config, workdir)
    run, task = load_run(workdir), task_of(config)
    examples = evaluation_examples(task, 2, 40, 0)
    ordinary = lambda length, rows: np.tile(np.arange(length, dtype=np.int32), (len(rows), 1))
    forced = score_task_teacher_forced(run.model, run.params(), task, examples, ordinary, 16)
    greedy = score_task(run.model, run.params(), task, examples, 16)
    assert 0 < greedy.exact < 40 and forced.exact == greedy.exact  # the same examples exactly right
    assert forced.n_answer_tokens == greedy.n_answer_tokens  # per-token counts differ: given the gold prefix
    protocol = TaskProtocol(n_examples=8, positions="randomized")
    row = task_sweep([workdir], ["2"], protocol, str(tmp_path / "out"), log=lambda _: None)[0]
    assert (row["decoding"], row["protocol"]) == ("teacher-forced", "task:copy, randomized positions")
    # The rows hold copy's longest example at the default 20 items (train_len 41): 21 items,
    # '>' and 21 more are 43 inputs.
    with pytest.raises(EvalError, match=r"draw up to 43 distinct ids at 21 items, more than the run's \[0, 41\) "
                                         r"holds: test at lengths up to 20"):  # fmt: skip
        task_sweep([workdir], ["21"], protocol, str(tmp_path / "out"))
    # Both ways in one folder: a section each.
    task_sweep([workdir], ["2"], TaskProtocol(n_examples=8), str(tmp_path / "out"), log=lambda _: None)
    table = open(tmp_path / "out" / "results.md").read()
    assert "(task:copy, randomized positions, 8 examples, evaluation seed 0)" in table
    assert (
        "(task:copy, 8 examples, evaluation seed 0)" in table
        and "## Exact match (the whole answer and EOS), greedy" in table
    )
