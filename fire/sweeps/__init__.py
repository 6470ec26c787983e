"""Sweeps: many training runs named by one config file, trained (locally, or one worker's
share of a cluster), evaluated at many lengths and aggregated over seeds.

* ``spec``: the sweep config expanded into runs, shards and selections;
* ``plan``: what the runs will cost (``--dry_run``): FLOPs, memory per device, measured steps;
* ``runner``: training the runs, one process each, with progress;
* ``results``: the results folder, grown by every evaluation; ``aggregate``: its tables.

    python sweep.py --sweep=configs/sweeps/cpu_main.py --dry_run
"""

from fire.sweeps.spec import RunSpec, SweepError, expand, load_sweep, parse_shard, run_config, select, shard_of

__all__ = ["RunSpec", "SweepError", "expand", "load_sweep", "parse_shard", "run_config", "select", "shard_of"]
