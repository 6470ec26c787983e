"""Sweeps: many training runs named by one config file, trained (locally, or one worker's
share of a cluster), evaluated at many lengths and aggregated over seeds.

    python sweep.py --sweep=configs/sweeps/cpu_main.py --dry_run
"""

from fire.sweeps.spec import RunSpec, SweepError, expand, load_sweep, parse_shard, run_config, shard_of

__all__ = ["RunSpec", "SweepError", "expand", "load_sweep", "parse_shard", "run_config", "shard_of"]
