"""The paper's language-modelling setup: base/large decoder-only LMs on C4 at 512 or 2048.

    python train.py --config=configs/paper.py:pe=fire,size=base,train_len=2048 --workdir=runs/paper/fire_base_2048

Then the zero-shot length sweep at 512 ... 8192:

    python eval_length.py --workdir='runs/paper/*' --lengths=512,1024,2048,4096,8192 --output_dir=results/paper

The whole table (every encoding, both sizes and lengths) is the sweep configs/sweeps/paper.py.

Accepts the same axes as configs/lm.py (defaults here: size=base, train_len=512,
data=c4/en:3.1.0). C4 must be prepared for TFDS beforehand (``tfds build c4/en`` on a
machine that can download it, array_record format), as these runs need accelerators.

What is known of the paper's setup: C4, "base" and "large" sizes (believed
to be 12 layers / 768 / 12 heads and 24 / 1024 / 16; unverified), training lengths 512 and
2048, zero-shot log-perplexity at 512 ... 8192. The optimisation schedule below is our
choice, not the paper's (its exact values are not available here): AdamW, batch 256
sequences, 100k steps (13B tokens at 512), cosine decay to 10%, bf16 compute, a
SentencePiece vocabulary of 32k trained on the training split.
"""

from fire.config import apply_smoke, from_axes, parse_axes


def get_config(arg: str = ""):
    defaults = "size=base,train_len=512,data=c4/en:3.1.0"
    items = [s for s in ",".join(filter(None, [defaults, arg])).split(",") if s.strip() != "smoke"]
    c = from_axes(",".join(items), lock=False)  # later keys win
    c.num_steps = 100_000
    c.batch_size = 256
    c.optimizer.warmup_steps = 2000
    c.model.dtype = "bfloat16"
    c.data.tokenizer = "sentencepiece"
    c.data.spm_vocab_size = 32000
    c.data.eval_split = "validation"
    c.eval_every = 5000
    c.eval_tokens = 1 << 20
    c.checkpoint_every = 2000
    c.keep_checkpoints = 3
    c.mesh.update(data=-1, fsdp=1, tensor=1)
    c.peak_flops = 989e12  # H100/H200 dense bf16; set to your accelerator's peak
    if parse_axes(arg)["smoke"]:
        apply_smoke(c)
    c.lock()
    return c
