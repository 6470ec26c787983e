"""The length sweep's figures show what the results hold, legibly: every position bin, one
row of bias panels per run with titles that fit, and training curves with enough points."""

import os
import subprocess

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from fire.evaluation.plots import fire_bias, position_curve
from fire.evaluation.scoring import position_bins

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A sweep's labels are as long as this: encoding, ablation, size, training length, seed.
LABELS = [f"fire_no_interpolation tiny_L128_s{i}" for i in range(11)]


def _position_rows(label, eval_len=2048, windows=32):
    """A results row with ``position_loss`` binned as the scorer bins it, ``windows`` windows."""
    edges = position_bins(eval_len)
    tokens = (np.diff(edges) * windows).tolist()
    loss = [2.0 + 0.1 * np.log1p(e) for e in edges[:-1]]
    curve = {"edges": edges.tolist(), "tokens": tokens, "loss": loss}
    return [dict(label=label, eval_len=eval_len, train_len=128, loss=2.0, protocol="stream", position_loss=curve)]


def test_the_position_curve_plots_every_bin():
    rows = _position_rows("fire@128")
    curve = rows[0]["position_loss"]
    (line,) = [line for line in position_curve(rows).axes[0].get_lines() if line.get_label().startswith("fire")]
    x, y = line.get_data()
    assert len(x) == len(curve["loss"]) == 40  # 24 of them below the training length, 128
    assert np.sum(np.asarray(curve["edges"][1:]) <= 128) == 24 and np.sum(np.asarray(x) < 128) == 24
    np.testing.assert_allclose(y, curve["loss"])
    assert np.all(np.diff(x) > 0)


def test_an_empty_position_bin_is_a_gap_not_a_point():
    rows = _position_rows("fire@128")
    rows[0]["position_loss"]["loss"][3], rows[0]["position_loss"]["tokens"][3] = None, 0
    (line,) = [line for line in position_curve(rows).axes[0].get_lines() if line.get_label().startswith("fire")]
    y = line.get_ydata()
    assert len(y) == 40 and np.isnan(y[3]) and np.isfinite(np.delete(y, 3)).all()


def _biases(labels, layers=2, heads=4, queries=(31, 127, 255)):
    rng = np.random.default_rng(0)
    out = {}
    for label in labels:
        curves = {}
        for k in range(layers):
            curve = rng.normal(size=(len(queries), heads, max(queries) + 1)).astype(np.float32)
            for j, q in enumerate(queries):
                curve[j, :, q + 1 :] = np.nan  # no key past the query
            curves[f"blocks_{k}"] = curve
        thresholds = {layer: 130.0 + k for k, layer in enumerate(curves)}
        out[label] = dict(train_len=128, queries=list(queries), curves=curves, thresholds=thresholds)
    return out


def _titles(fig):
    """Every title drawn on the figure (panels' and rows' and the figure's), with its box in
    pixels, after a render."""
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    texts = [ax.title for ax in fig.axes] + [f._suptitle for f in [fig, *fig.subfigs] if f._suptitle]
    return [(t.get_text(), t.get_window_extent(renderer)) for t in texts if t.get_text()], renderer


@pytest.mark.parametrize("runs", [1, 2, pytest.param(11, marks=pytest.mark.slow)])
def test_the_bias_figure_has_a_row_per_run_and_titles_that_fit(runs):
    fig = fire_bias(_biases(LABELS[:runs]))
    assert len(fig.axes) == runs * 4  # a row per run, a panel per head
    titles, renderer = _titles(fig)
    assert {text for text, _ in titles} >= set(LABELS[:runs]) | {"head 0", "head 3"}
    figure_box = fig.bbox
    for i, (text, box) in enumerate(titles):
        assert figure_box.x0 <= box.x0 and box.x1 <= figure_box.x1, f"{text!r} runs off the figure"
        for other, other_box in titles[i + 1 :]:
            assert not box.overlaps(other_box), f"{text!r} overlaps {other!r}"
    for ax in fig.axes:  # a panel's title is no wider than the panel
        assert ax.title.get_window_extent(renderer).width <= ax.get_window_extent(renderer).width


def test_the_bias_figure_tells_layers_apart_and_marks_each_threshold():
    fig = fire_bias(_biases(LABELS[:1], layers=3))
    ax = fig.axes[0]
    curves = [line for line in ax.get_lines() if line.get_color() != "gray"]
    thresholds = [line for line in ax.get_lines() if line.get_color() == "gray"]
    assert len(curves) == 3 * 3  # a line per layer and query
    styles = {(line.get_color(), line._unscaled_dash_pattern) for line in curves}
    assert len(styles) == 9  # queries by colour, layers by dash
    assert sorted(line.get_xdata()[0] for line in thresholds) == [130.0, 131.0, 132.0]


def test_the_quickstart_logs_enough_points_for_its_training_curves(tmp_path):
    """``scripts/compare.sh`` (and the quickstart through it) asks ``train.py`` for a progress
    line and TensorBoard point every ``log_every`` steps: at least 20 of them per run. A
    stand-in Python records the commands instead of running them."""
    python, calls = tmp_path / "python", tmp_path / "calls.txt"
    python.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> {calls}\n'
        'for a in "$@"; do case $a in --output_dir=*) mkdir -p "${a#*=}"; : > "${a#*=}/results.md";; esac; done\n'
    )
    python.chmod(0o755)
    env = dict(os.environ, PYTHON=str(python), RUNS=str(tmp_path / "runs"), OUT=str(tmp_path / "out"))
    for steps in ("1000", "100"):
        done = subprocess.run(["bash", "scripts/compare.sh"], cwd=REPO, env={**env, "STEPS": steps},
                              capture_output=True, text=True)  # fmt: skip
        assert done.returncode == 0, done.stderr
    trains = [line.split() for line in calls.read_text().splitlines() if line.startswith("train.py")]
    assert len(trains) == 2 * 6  # six encodings, two step counts
    for argv in trains:
        flags = dict(a.removeprefix("--").split("=", 1) for a in argv if a.startswith("--config."))
        assert int(flags["config.num_steps"]) // int(flags["config.log_every"]) >= 20, argv
