"""Generate text from a trained run, with a KV cache, for any encoding and past the training length.

    python generate.py --workdir=runs/tiny_128/fire --prompt="To be" --max_new_tokens=200 --temperature=0.8 --top_p=0.9

The prompt starts a document (it follows an EOS, as every document does in training). The
continuation ends at the model's first EOS (``--ignore_eos``: goes on, each EOS shown as
``<eos>``), at the first ``--stop`` string in its text (repeatable; the text ends before it;
``\\n``, ``\\t`` and ``\\\\`` read as a newline, a tab and a backslash), or after
``--max_new_tokens``. Prints the prompt and its continuation, then one line: what ended it,
the decode's tokens/s (compile excluded) and the total length against the run's training
length. ``--temperature=0`` is greedy; ``--attention`` picks the prompt's attention path
(default: the run's).
"""

import re

from absl import flags

flags.DEFINE_string("workdir", None, "A training run's folder.")
flags.DEFINE_string("prompt", "", "Text to continue (empty: start a document).")
flags.DEFINE_integer("max_new_tokens", 200, "Most tokens to generate.")
flags.DEFINE_float("temperature", 0.8, "Sampling temperature; 0: greedy.")
flags.DEFINE_integer("top_k", 40, "Sample among the k most likely tokens (0: all).")
flags.DEFINE_float("top_p", 1.0, "Sample among the most likely tokens whose probabilities first reach p (1: all).")
flags.DEFINE_multi_string("stop", [], "Stop string (repeatable): the text ends before its first occurrence.")
flags.DEFINE_bool("ignore_eos", False, "Go on past the model's EOS (shown as <eos>) up to --max_new_tokens.")
flags.DEFINE_integer("seed", 0, "Sampling seed.")
flags.DEFINE_enum("attention", None, ["dense", "blockwise"], "Attention path of the prompt (default: the run's).")
flags.mark_flag_as_required("workdir")
FLAGS = flags.FLAGS

ESCAPES = {"n": "\n", "t": "\t", "\\": "\\"}


def unescape(text: str) -> str:
    """``\\n``, ``\\t`` and ``\\\\`` as a newline, a tab and a backslash; other text as is."""
    return re.sub(r"\\([nt\\])", lambda m: ESCAPES[m.group(1)], text)


def main(argv):
    from fire.cli import fail
    from fire.evaluation.generation import generate_text
    from fire.model.generate import Sampling

    if len(argv) > 1:
        fail(f"Unexpected arguments: {' '.join(argv[1:])} (flags are written --name=value).")
    sampling = Sampling(temperature=FLAGS.temperature, top_k=FLAGS.top_k, top_p=FLAGS.top_p)
    stops = [unescape(s) for s in FLAGS.stop]
    out = generate_text(FLAGS.workdir, FLAGS.prompt, FLAGS.max_new_tokens, sampling, FLAGS.seed, FLAGS.attention,
                        stops, FLAGS.ignore_eos)  # fmt: skip
    print(out.text, flush=True)
    print(out.summary(), flush=True)


if __name__ == "__main__":
    from fire.cli import run_app

    run_app(main)
