"""Evaluation of trained runs, by job:

* ``runs``: loading workdirs as :class:`TrainedRun` (checked, labelled, parameters lazily);
* ``scoring``: the one scorer, used by the length sweep and by validation in training;
* ``length_sweep``: every run at every length, with the reuse cache;
* ``report`` and ``plots``: the tables and figures written into the output folder;
* ``generation``: text from a trained run (``generate.py``).
"""

from fire.evaluation.generation import Generated, generate_text
from fire.evaluation.length_sweep import sweep
from fire.evaluation.runs import EvalError, TrainedRun, encoding_bias, expand_workdirs, load_run, load_runs
from fire.evaluation.scoring import Settings, make_score_fn, score_length

__all__ = [
    "EvalError", "Generated", "Settings", "TrainedRun", "encoding_bias", "expand_workdirs", "generate_text", "load_run",
    "load_runs", "make_score_fn", "score_length", "sweep",
]  # fmt: skip
