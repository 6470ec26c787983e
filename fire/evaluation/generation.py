"""Text from a trained run: the prompt as a document start, generated with the KV cache of
``fire.model.generate``, and the decode's speed with compilation excluded."""

import dataclasses
import time
from typing import Optional

import jax
import numpy as np

from fire.evaluation.runs import EvalError, load_run
from fire.model.generate import Sampling, check_request, decode_program, prefill_program


@dataclasses.dataclass(frozen=True)
class Generated:
    """What one generation produced, and how fast."""

    text: str  # the prompt and its continuation
    prompt_tokens: int  # the leading EOS included
    new_tokens: int
    train_len: int
    decode_s: float  # the decode loop alone: compiled beforehand, prefill excluded

    @property
    def total_len(self) -> int:
        return self.prompt_tokens + self.new_tokens

    @property
    def tokens_per_s(self) -> float:
        # The decode loop feeds every new token but the last, which is only sampled.
        return (self.new_tokens - 1) / self.decode_s if self.decode_s > 0 else 0.0

    def summary(self) -> str:
        where = "past" if self.total_len > self.train_len else "within"
        return (
            f"decode: {self.new_tokens - 1} steps in {self.decode_s:.2f} s, {self.tokens_per_s:,.0f} tokens/s "
            f"(compile excluded); total length {self.total_len}, {where} the training length {self.train_len}"
        )


def generate_text(
    workdir: str,
    prompt: str,
    max_new_tokens: int,
    sampling: Sampling = Sampling(),
    seed: int = 0,
    impl: Optional[str] = None,
) -> Generated:
    """Continues ``prompt`` with the run in ``workdir``, batch 1.

    The prompt is encoded after an EOS: in training every document follows one, so the
    prompt is read as the start of a document (an empty prompt starts one from nothing).
    Ids past the tokenizer's vocabulary (the model's padding) are never sampled.

    Raises:
      EvalError: not a training run, or one without a checkpoint.
      LengthError: a total length past the encoding's reach (``learned``'s table).
      GenerationError: bad sizes or sampling.
    """
    run = load_run(workdir)
    if run.step is None:
        raise EvalError(
            f"no checkpoint in {workdir}: train it first (python train.py --config=... --workdir={workdir})."
        )
    tokenizer = run.tokenizer
    ids = np.concatenate([[tokenizer.eos_id], tokenizer.encode(prompt)]).astype(np.int32)
    impl = impl or run.model_cfg.attention
    max_len = check_request(run.model_cfg, len(ids), max_new_tokens, impl)  # before loading anything
    sampling = dataclasses.replace(sampling, vocab_size=tokenizer.vocab_size)
    params, prompt_1xP, rng = run.params(), ids[None], jax.random.key(seed)
    logits, caches = jax.block_until_ready(prefill_program(run.model_cfg, max_len, impl)(params, prompt_1xP))
    decode = decode_program(run.model_cfg, max_len, sampling).lower(params, prompt_1xP, logits, caches, rng).compile()
    start = time.perf_counter()
    tokens = np.asarray(jax.block_until_ready(decode(params, prompt_1xP, logits, caches, rng)))[0]
    return Generated(
        text=tokenizer.decode(tokens[1:]),
        prompt_tokens=len(ids),
        new_tokens=max_new_tokens,
        train_len=run.config.train_len,
        decode_s=time.perf_counter() - start,
    )
