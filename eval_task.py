"""Task sweep: score runs trained on a task by exact match at each test length; write tables
and figures.

    python eval_task.py --workdir='runs/addition/*' --lengths=1:30 --output_dir=results/addition

Every run must be trained on the same task (``configs/lm.py:task=NAME``). Each length's test
set is ``--n_examples`` examples drawn from ``--eval_seed`` alone (the same examples for
every run, none of them a training draw); each answer is decoded greedily with the KV cache
and scored by exact match (the whole answer and its EOS) and per-token accuracy. Default
lengths: each run's shortest training length, and its longest times 1, 2, 4, 8. Re-running
into the same --output_dir reuses the rows already computed.

An evaluation-time task option (one that keeps the task's symbols) is a separate row, e.g.
passkey with the needle at a fixed depth (several depths give ``depth_heatmap.png``):

    python eval_task.py --workdir=runs/passkey --task_option=depth=0.5 --output_dir=results/passkey
"""

from absl import flags

from fire.evaluation.task_sweep import DEFAULT_EXAMPLES, TaskProtocol

DEFAULT = TaskProtocol()
flags.DEFINE_multi_string("workdir", None, "A task run's folder, or a quoted glob of them; repeatable.")
flags.DEFINE_list("lengths", [], "Test lengths in the task's unit, and ranges START:STOP[:STEP] (default: see above).")
flags.DEFINE_integer("n_examples", DEFAULT_EXAMPLES, "Test examples per length.")
flags.DEFINE_integer("eval_seed", DEFAULT.eval_seed, "The test set's seed (independent of every training seed).")
flags.DEFINE_integer("batch_size", DEFAULT.batch_size, "Examples decoded together.")
flags.DEFINE_multi_string(
    "task_option", [], "KEY=VALUE: test with a task option changed (e.g. depth=0.5 for passkey); repeatable."
)
flags.DEFINE_enum(
    "positions",
    DEFAULT.positions,
    ["ordinary", "randomized"],
    "Position ids: 0..T-1 (greedy decoding with the KV cache), or a seeded sorted sample of [0, max_position) per "
    "example for runs trained with train_positions.randomize (scored teacher-forced: the same exact match).",
)
flags.DEFINE_integer("position_seed", DEFAULT.position_seed, "The seed of --positions=randomized.")
flags.DEFINE_string("output_dir", None, "Where results.{csv,json,md} and the figures go.")
flags.mark_flag_as_required("workdir")
flags.mark_flag_as_required("output_dir")
FLAGS = flags.FLAGS


def main(argv):
    from fire.cli import parse_options
    from fire.evaluation.runs import EvalError
    from fire.evaluation.task_sweep import sweep

    if len(argv) > 1:
        raise EvalError(f"Unexpected arguments: {' '.join(argv[1:])} (flags are written --name=value).")
    protocol = TaskProtocol(n_examples=FLAGS.n_examples, eval_seed=FLAGS.eval_seed, batch_size=FLAGS.batch_size,
                            positions=FLAGS.positions, position_seed=FLAGS.position_seed)  # fmt: skip
    sweep(FLAGS.workdir, FLAGS.lengths, protocol, FLAGS.output_dir, task_options=parse_options(FLAGS.task_option),
          log=lambda line: print(line, flush=True))  # fmt: skip


if __name__ == "__main__":
    from fire.cli import run_app

    run_app(main)
