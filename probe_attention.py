"""Where attention goes: the attention mass by distance of trained runs at each length.

    python probe_attention.py --workdir=runs/tiny_128/fire --workdir=runs/tiny_128/alibi \
        --lengths=128,512,2048 --output_dir=results/attention

Per run, length and layer: the attention weight by distance (averaged over heads and
queries) and, for queries past the training length, the share of it on keys farther than the
training length (``attention.md``, ``attention.json``, ``attention_mass.png``). A task run is
probed on its test examples (lengths in the task's unit).
"""

from absl import flags

flags.DEFINE_multi_string("workdir", None, "A training run's folder, or a quoted glob of them; repeatable.")
flags.DEFINE_list("lengths", [], "Lengths (default: train_len x 1, 4, 16; a task's max_len x 1, 2, 4).")
flags.DEFINE_integer("n_sequences", 8, "Inputs per length (validation windows or test examples).")
flags.DEFINE_string("output_dir", None, "Where attention.{json,md} and attention_mass.png go.")
flags.mark_flag_as_required("workdir")
flags.mark_flag_as_required("output_dir")
FLAGS = flags.FLAGS


def main(argv):
    from fire.evaluation.attention_probe import probe
    from fire.evaluation.runs import EvalError

    if len(argv) > 1:
        raise EvalError(f"Unexpected arguments: {' '.join(argv[1:])} (flags are written --name=value).")
    probe(FLAGS.workdir, FLAGS.lengths, FLAGS.output_dir, FLAGS.n_sequences, log=lambda line: print(line, flush=True))


if __name__ == "__main__":
    from fire.cli import run_app

    run_app(main)
