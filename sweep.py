"""Run a sweep: train its runs, evaluate them at longer lengths, aggregate over seeds.

    python sweep.py --sweep=configs/sweeps/cpu_main.py --dry_run         # the runs, their status and cost
    python sweep.py --sweep=configs/sweeps/paper.py --dry_run --memory --devices=8 --device_memory=h100-80gb
    python sweep.py --sweep=configs/sweeps/cpu_main.py                   # train what is missing, evaluate, aggregate
    python sweep.py --sweep=configs/sweeps/cpu_main.py --print_commands  # one train.py command per run
    python sweep.py --sweep=configs/sweeps/cpu_main.py --shard=3/8       # worker 3 of 8 (0-based) trains its share
    python sweep.py --sweep=configs/sweeps/cpu_main.py --only=fire:1     # one row's seed 1 (or ROW, or a name glob)
    python sweep.py --sweep=configs/sweeps/cpu_main.py --eval_only       # once the workers are done

Re-running skips finished runs, resumes interrupted ones and reuses evaluations already
made. An evaluation of some runs merges into the results folder: rows of runs it did not
evaluate are kept, and a table that would lose a cell is refused (unless --prune). A failed run is reported with its log and the others go on; the exit code
is 1 if any failed, 143 after a SIGTERM (the run in training saved a checkpoint; the same
command resumes). Under a SLURM job array the shard comes from SLURM_ARRAY_TASK_ID, _MIN,
_STEP and _COUNT, whatever the array's base and step (scripts/sweep.sbatch); the runs are dealt
out to the shards by their estimated FLOPs. A sharded worker only trains; evaluation runs once,
without --shard, when the workers are done.
"""

import os
import sys

from absl import flags

flags.DEFINE_string("sweep", None, "The sweep config file, e.g. configs/sweeps/cpu_main.py.")
flags.DEFINE_string("output_dir", None, "Where the results go (default: the sweep's output_dir).")
flags.DEFINE_bool("dry_run", False, "List the runs with their status and cost; run nothing.")
flags.DEFINE_bool("memory", False, "With --dry_run: compile each run's train step and print its memory per device.")
flags.DEFINE_integer(
    "devices", 0, "With --memory on a CPU: plan for this many devices (fake CPU devices; the config's mesh fills them)."
)
flags.DEFINE_string(
    "device_memory",
    None,
    "With --dry_run: an accelerator (h100-80gb, a100-40gb, tpu-v4, ... ; its memory and peak) or a size (80GiB): "
    "--memory flags every run that does not fit, and the cost is given in device-hours.",
)
flags.DEFINE_float("mfu", 0.4, "With --dry_run --device_memory=NAME: the model FLOPs utilisation assumed for hours.")
flags.DEFINE_bool("measure_step", False, "With --dry_run: time each run's train step here and estimate its wall time.")
flags.DEFINE_bool("print_commands", False, "Print one train.py command per run (of the shard); run nothing.")
flags.DEFINE_string("shard", None, "I/N, I from 0: train only worker I's share of N (default: all, or SLURM's array).")
flags.DEFINE_string("only", None, "Only these runs: comma-separated ROW, ROW:SEED or run-name globs (fire/*_L512_*).")
flags.DEFINE_bool("eval_only", False, "Evaluate and aggregate the finished runs; train nothing.")
flags.DEFINE_bool("train_only", False, "Train the runs; do not evaluate.")
flags.DEFINE_bool(
    "prune", False, "Let the table drop cells no run of the sweep gives any more (per_run/ keeps their rows)."
)
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

    from fire.sweeps import expand, load_sweep, parse_shard, plan, results, runner, select, shard_of

    log = lambda line: print(line, flush=True)
    sweep = load_sweep(FLAGS.sweep)
    specs = expand(sweep)
    index, count = parse_shard(FLAGS.shard)
    if FLAGS.eval_only and (FLAGS.train_only or count > 1):
        why = "--train_only" if FLAGS.train_only else f"a shard ({index}/{count}, from --shard or a job array)"
        raise SweepError(f"--eval_only with {why} would do nothing: evaluation is not sharded; run --eval_only "
                         f"once, without --shard or a job array, when the workers are done.")  # fmt: skip
    # The runs are dealt out by their estimated FLOPs, so that the shards take about as long.
    mine = shard_of(select(specs, FLAGS.only), index, count, cost=lambda spec: plan.estimate(spec).flops)
    if count > 1:
        log(f"Shard {index}/{count}: {len(mine)} run(s).")
    if FLAGS.dry_run:
        device = plan.parse_device(FLAGS.device_memory) if FLAGS.device_memory else None
        too_big = plan.dry_run(mine, log, memory=FLAGS.memory, device=device, measure=FLAGS.measure_step,
                               mfu=FLAGS.mfu, status=runner.status)  # fmt: skip
        sys.exit(1 if too_big else 0)
    if FLAGS.print_commands:
        for spec in mine:
            print(spec.shell_command())
        return None
    evaluating = count == 1 and not FLAGS.train_only  # a sharded worker only trains
    output_dir = FLAGS.output_dir or sweep.output_dir
    if evaluating:
        results.check_output_dir(output_dir, sweep.name)  # before any training: a folder it may not write
    outcome = {} if FLAGS.eval_only else runner.train_runs(mine, log)  # a SIGTERM ends it: exit 143
    if evaluating:
        results.evaluate_runs(sweep, specs, log, output_dir=output_dir, only=mine, prune=FLAGS.prune)
    failures = runner.summary(outcome, mine)
    if failures:
        print(failures, file=sys.stderr)
        sys.exit(1)
    return None


if __name__ == "__main__":
    from fire.cli import run_app

    run_app(main)
