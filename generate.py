"""Generate text from a trained run, with a KV cache, for any encoding and past the training length.

    python generate.py --workdir=runs/fire_128 --prompt="To be" --max_new_tokens=200 --temperature=0.8 --top_k=40

The prompt starts a document (it follows an EOS, as every document does in training).
Prints the prompt and its continuation, then one line: the decode's tokens/s (compile
excluded) and the total length against the run's training length. ``--temperature=0`` is
greedy; ``--attention`` picks the prompt's attention path (default: the run's).
"""

from absl import flags

flags.DEFINE_string("workdir", None, "A training run's folder.")
flags.DEFINE_string("prompt", "", "Text to continue (empty: start a document).")
flags.DEFINE_integer("max_new_tokens", 200, "Tokens to generate.")
flags.DEFINE_float("temperature", 0.8, "Sampling temperature; 0: greedy.")
flags.DEFINE_integer("top_k", 40, "Sample among the k most likely tokens (0: all).")
flags.DEFINE_integer("seed", 0, "Sampling seed.")
flags.DEFINE_enum("attention", None, ["dense", "blockwise"], "Attention path of the prompt (default: the run's).")
flags.mark_flag_as_required("workdir")
FLAGS = flags.FLAGS


def main(argv):
    from fire.cli import fail
    from fire.evaluation.generation import generate_text
    from fire.model.generate import Sampling

    if len(argv) > 1:
        fail(f"Unexpected arguments: {' '.join(argv[1:])} (flags are written --name=value).")
    sampling = Sampling(temperature=FLAGS.temperature, top_k=FLAGS.top_k)
    out = generate_text(FLAGS.workdir, FLAGS.prompt, FLAGS.max_new_tokens, sampling, FLAGS.seed, FLAGS.attention)
    print(out.text, flush=True)
    print(out.summary(), flush=True)


if __name__ == "__main__":
    from fire.cli import run_app

    run_app(main)
