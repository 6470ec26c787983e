"""Length sweep: evaluate trained runs at (longer) lengths; write tables and figures.

    python eval_length.py --workdir=runs/fire_512 --workdir=runs/rope_512 \
        --lengths=512,1024,2048,4096,8192 --output_dir=results/

``--workdir`` repeats and takes globs (quote them: --workdir='runs/*'). Default lengths:
each run's training length times 1, 2, 4, 8, 16. Protocols (--protocol): ``stream``
(non-overlapping windows of the validation stream), ``docs`` (windows inside single
documents), ``sliding`` (windows every --stride tokens, each scoring its last --stride
targets). ``--dry_run`` compiles every length and prints its memory plan without running.
Re-running into the same --output_dir reuses the rows already computed.

An evaluation-time variant (encoding options that change no parameter) is a separate row:

    python eval_length.py --workdir=runs/fire_512 --encoding_option=normalizer_cap=512 --output_dir=results/
"""

from absl import flags

from fire.data import PROTOCOLS, Protocol
from fire.evaluation.scoring import Settings

DEFAULT_PROTOCOL, DEFAULT_SETTINGS = Protocol(), Settings()
flags.DEFINE_multi_string("workdir", None, "A training run's folder, or a quoted glob of them; repeatable.")
flags.DEFINE_list("lengths", [], "Evaluation lengths (default: each run's train_len x 1, 2, 4, 8, 16).")
flags.DEFINE_enum("protocol", DEFAULT_PROTOCOL.name, PROTOCOLS, "How the validation split is cut into windows.")
flags.DEFINE_integer(
    "stride", DEFAULT_PROTOCOL.stride, "sliding protocol: tokens between window starts (default: length // 2)."
)
flags.DEFINE_integer(
    "eval_tokens", DEFAULT_PROTOCOL.eval_tokens, "Tokens scored per length (whole windows, capped by the split)."
)
flags.DEFINE_integer(
    "batch_tokens", DEFAULT_SETTINGS.batch_tokens, "Tokens per batch; batch size = max(1, batch_tokens // length)."
)
flags.DEFINE_enum(
    "attention",
    DEFAULT_SETTINGS.attention,
    ["auto", "dense", "blockwise"],
    "auto: dense for windows of one tile that fit in memory, else blockwise.",
)
flags.DEFINE_integer("block_size", DEFAULT_SETTINGS.block_size, "Blockwise attention tile (0: the run's).")
flags.DEFINE_float(
    "memory_limit_gib", 0, "Memory one eval step may plan (0: 90%% of an accelerator's, half the host's RAM on CPU)."
)
flags.DEFINE_enum(
    "positions",
    DEFAULT_SETTINGS.positions,
    ["ordinary", "randomized"],
    "Position ids: 0..T-1, or a seeded sorted sample of [0, max_position) per window (Ruoss et al. 2023, for "
    "runs trained with train_positions.randomize; refused past their max_position).",
)
flags.DEFINE_integer("position_seed", DEFAULT_SETTINGS.position_seed, "The seed of --positions=randomized.")
flags.DEFINE_string("output_dir", None, "Where results.{csv,json,md} and the figures go.")
flags.DEFINE_bool("dry_run", False, "Compile every length and print its memory plan; run nothing.")
flags.DEFINE_multi_string(
    "encoding_option",
    [],
    "KEY=VALUE: evaluate with an encoding option changed that changes no parameter (e.g. "
    "normalizer_cap=512 for FIRE, scale=4 for rope_pi), as a separately labelled row; repeatable.",
)
flags.mark_flag_as_required("workdir")
FLAGS = flags.FLAGS


def main(argv):
    from fire.cli import parse_options
    from fire.evaluation import EvalError, sweep

    if len(argv) > 1:
        raise EvalError(f"Unexpected arguments: {' '.join(argv[1:])} (flags are written --name=value).")
    if not FLAGS.dry_run and not FLAGS.output_dir:
        raise EvalError("--output_dir is required (unless --dry_run).")
    if FLAGS["stride"].present and FLAGS.stride < 1:
        raise EvalError(f"--stride must be at least 1, got {FLAGS.stride} (leave it out for half the length).")
    options = parse_options(FLAGS.encoding_option)
    settings = Settings(
        protocol=Protocol(FLAGS.protocol, eval_tokens=FLAGS.eval_tokens, stride=FLAGS.stride),
        batch_tokens=FLAGS.batch_tokens,
        attention=FLAGS.attention,
        block_size=FLAGS.block_size,
        memory_limit=int(FLAGS.memory_limit_gib * (1 << 30)),
        positions=FLAGS.positions,
        position_seed=FLAGS.position_seed,
    )
    sweep(FLAGS.workdir, FLAGS.lengths, settings, FLAGS.output_dir, dry_run=FLAGS.dry_run,
          log=lambda line: print(line, flush=True), encoding_options=options)  # fmt: skip


if __name__ == "__main__":
    from fire.cli import run_app

    run_app(main)
