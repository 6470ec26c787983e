"""Train a decoder-only LM with a chosen position encoding.

    python train.py --config=configs/lm.py:pe=fire,size=tiny,train_len=512 --workdir=runs/fire_512

Re-running the same command resumes from the workdir's latest checkpoint. Multi-host:
pass --coordinator_address, --num_processes and --process_id to every process, or
--distributed to let JAX detect the cluster (TPU pods, SLURM, ...).

Exit codes: 0 the run finished (or was already finished); 2 an error a user can cause, one
line on stderr; 130 Ctrl-C (saved at the step boundary; a second Ctrl-C stops without
saving); 143 a preemption notice (SIGTERM): the checkpoint is saved and the run is not
finished, so re-run the same command to resume.
"""

from absl import flags
from ml_collections import config_flags

config_flags.DEFINE_config_file(
    "config", None, "Config file and sweep axes, e.g. configs/lm.py:pe=fire.", lock_config=True
)
flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and the resolved config go.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0, for multi-host runs.")
flags.DEFINE_integer("num_processes", None, "Number of processes in a multi-host run.")
flags.DEFINE_integer("process_id", None, "This process's index in a multi-host run.")
flags.DEFINE_bool("distributed", False, "Initialise jax.distributed with cluster auto-detection.")
flags.DEFINE_bool(
    "print_config", False, "Print every config key with its value, meaning and accepted values, then exit."
)
flags.mark_flags_as_required(["config"])
FLAGS = flags.FLAGS


def main(argv):
    from fire.errors import UserError

    if len(argv) > 1:
        raise UserError(f"Unexpected arguments: {' '.join(argv[1:])} (flags are written --name=value).")
    if FLAGS.print_config:
        from fire.config import explain

        print(explain(FLAGS.config))
        return
    if not FLAGS.workdir:
        raise UserError("--workdir is required and not empty (where checkpoints, metrics and the config go).")
    import jax

    if FLAGS.coordinator_address or FLAGS.distributed:
        jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)

    from fire.training import train

    train(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
    from fire.cli import run_app
    from fire.config import check_command_line

    run_app(main, check_argv=check_command_line)
