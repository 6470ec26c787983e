"""Run a sweep: train its runs, evaluate them at longer lengths, aggregate over seeds.

    python sweep.py --sweep=configs/sweeps/cpu_main.py --dry_run         # the runs, their status and cost
    python sweep.py --sweep=configs/sweeps/paper.py --dry_run --memory --devices=8   # + memory per device
    python sweep.py --sweep=configs/sweeps/cpu_main.py                   # train what is missing, evaluate, aggregate
    python sweep.py --sweep=configs/sweeps/cpu_main.py --print_commands  # one train.py command per run
    python sweep.py --sweep=configs/sweeps/cpu_main.py --shard=3/8       # worker 3 of 8 trains its share
    python sweep.py --sweep=configs/sweeps/cpu_main.py --eval_only       # once the workers are done

Re-running skips finished runs, resumes interrupted ones and reuses evaluations already
made. A failed run is reported with its log and the others go on; the exit code is 1 if any
failed. Under a job array, SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT give the shard.
A sharded worker only trains; evaluation runs without --shard (or with --eval_only).
"""

import os
import sys

from absl import flags

flags.DEFINE_string("sweep", None, "The sweep config file, e.g. configs/sweeps/cpu_main.py.")
flags.DEFINE_bool("dry_run", False, "List the runs with their status and cost; run nothing.")
flags.DEFINE_bool("memory", False, "With --dry_run: compile each run's train step and print its memory per device.")
flags.DEFINE_integer(
    "devices", 0, "With --memory on a CPU: plan for this many devices (fake CPU devices; the config's mesh fills them)."
)
flags.DEFINE_bool("print_commands", False, "Print one train.py command per run (of the shard); run nothing.")
flags.DEFINE_string("shard", None, "I/N: train only worker I's share of N (default: all, or the SLURM array's).")
flags.DEFINE_bool("eval_only", False, "Evaluate and aggregate the finished runs; train nothing.")
flags.DEFINE_bool("train_only", False, "Train the runs; do not evaluate.")
flags.mark_flag_as_required("sweep")
FLAGS = flags.FLAGS


def main(argv):
    from fire.sweeps import SweepError

    if len(argv) > 1:
        raise SweepError(f"Unexpected arguments: {' '.join(argv[1:])} (flags are written --name=value).")
    if FLAGS.devices < 0:
        raise SweepError(f"--devices must be >= 0, got {FLAGS.devices}.")
    if FLAGS.devices:  # before JAX starts
        os.environ["XLA_FLAGS"] = (
            f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={FLAGS.devices}"
        )

    from fire.sweeps import expand, load_sweep, parse_shard, runner, shard_of

    log = lambda line: print(line, flush=True)
    sweep = load_sweep(FLAGS.sweep)
    specs = expand(sweep)
    index, count = parse_shard(FLAGS.shard)
    mine = shard_of(specs, index, count)
    if FLAGS.dry_run:
        return runner.dry_run(mine, log, memory=FLAGS.memory)
    if FLAGS.print_commands:
        for spec in mine:
            print(spec.shell_command())
        return None
    runner.check_output_dir(sweep.output_dir, sweep.name)
    outcome = {} if FLAGS.eval_only else runner.train_runs(mine, log)
    if count == 1 and not FLAGS.train_only:
        runner.evaluate_runs(sweep, specs, log)
    failures = runner.summary(outcome, mine)
    if failures:
        print(failures, file=sys.stderr)
        sys.exit(1)
    return None


if __name__ == "__main__":
    from fire.cli import run_app

    run_app(main)
