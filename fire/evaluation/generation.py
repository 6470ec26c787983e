"""Text from a trained run: the prompt as a document start, continued with the KV cache of
``fire.model.generate`` until an EOS, a stop string or the token budget, and the decode's
speed with compilation excluded.

Stop strings are text: they are looked for in the decoded continuation, so they match across
token boundaries whatever the tokenizer. With stop strings the compiled decode runs in chunks
of :data:`CHUNK` tokens and the host looks between chunks, so at most ``CHUNK - 1`` tokens are
decoded past a stop (and counted in the tokens/s); without them it is one call. The text ends
before the stop string, which is left out, as OpenAI's API and vLLM return it.
"""

import dataclasses
import time
from typing import Optional, Sequence

import jax
import numpy as np

from fire.evaluation.runs import EvalError, load_run
from fire.model import ModelConfig
from fire.model.generate import NO_EOS, GenerationError, Sampling, check_request, decode_program, prefill_program

# Tokens decoded between two looks for a stop string: each look costs a round trip to the host
# (a few decode steps of the tiny model on a CPU), each token past the stop a wasted step.
CHUNK = 16
# How an EOS inside the text shows (only with ignore_eos: otherwise the text ends at the first).
EOS_MARK = "<eos>"


@dataclasses.dataclass(frozen=True)
class Generated:
    """What one generation produced, why it ended, and how fast."""

    text: str  # the prompt and its continuation, the EOS or stop string that ended it left out
    prompt_tokens: int  # the leading EOS included
    new_tokens: int  # through the end: the EOS, or the token that completed the stop string
    train_len: int
    decode_s: float  # the decode loop alone: compiled beforehand, prefill excluded
    steps: int  # decode steps run: new tokens fed, those decoded past a stop string included
    end: str  # what ended it: "eos", "stop" (a stop string) or "length" (the token budget)
    stop: str = ""  # the stop string it ended at

    @property
    def total_len(self) -> int:
        return self.prompt_tokens + self.new_tokens

    @property
    def tokens_per_s(self) -> float:
        return self.steps / self.decode_s if self.decode_s > 0 else 0.0

    def summary(self) -> str:
        ended = {
            "eos": f"ended at EOS after {self.new_tokens} new tokens",
            "stop": f"ended at the stop string {self.stop!r} (left out) after {self.new_tokens} new tokens",
            "length": f"ended at the token budget, {self.new_tokens} new tokens",
        }[self.end]
        where = "past" if self.total_len > self.train_len else "within"
        return (
            f"{ended}; decode: {self.steps} steps in {self.decode_s:.2f} s, {self.tokens_per_s:,.0f} tokens/s "
            f"(compile excluded); total length {self.total_len}, {where} the training length {self.train_len}"
        )


def check_stops(stop: Sequence[str]) -> tuple:
    """The stop strings as a tuple. Raises GenerationError for an empty one (it would match
    before the first token) or a single string passed where a sequence is expected."""
    if isinstance(stop, str):
        raise GenerationError(f"stop takes a sequence of stop strings, e.g. stop=({stop!r},); got a string.")
    stops = tuple(stop)
    if not all(isinstance(s, str) and s for s in stops):
        raise GenerationError(f"every stop string must be non-empty text, got {stops!r}.")
    return stops


def continuation_text(tokenizer, prompt_ids, new_ids) -> str:
    """The text of ``new_ids`` after the prompt's: decoded together with the prompt (a
    tokenizer may join a piece to the text before it) and cut after it; each EOS shows as
    :data:`EOS_MARK` and starts a document of its own, as in training."""
    starts = np.flatnonzero(np.asarray(new_ids) == tokenizer.eos_id)
    first, *docs = np.split(np.asarray(new_ids), starts)
    prompt_text = tokenizer.decode(prompt_ids)
    text = tokenizer.decode(np.concatenate([prompt_ids, first]))[len(prompt_text) :]
    return text + "".join(EOS_MARK + tokenizer.decode(doc[1:]) for doc in docs)


def first_stop(text_of, n_tokens: int, searched: int, stops: tuple) -> Optional[tuple]:
    """Where the first stop string ends the continuation: ``(tokens, text, stop)`` with
    ``tokens`` the fewest new tokens whose text holds a stop string and ``text`` that text cut
    before the earliest one; None if the text of ``n_tokens`` holds none.

    ``text_of(k)`` is the text of the first ``k`` new tokens; those of ``searched`` tokens
    held none."""
    if not any(s in text_of(n_tokens) for s in stops):
        return None
    tokens = next((k for k in range(searched + 1, n_tokens) if any(s in text_of(k) for s in stops)), n_tokens)
    text = text_of(tokens)
    cut, stop = min((text.find(s), s) for s in stops if s in text)
    return tokens, text[:cut], stop


def complete(
    model_cfg: ModelConfig,
    params,
    tokenizer,
    prompt: str,
    max_new_tokens: int,
    sampling: Sampling = Sampling(),
    seed: int = 0,
    impl: Optional[str] = None,
    stop: Sequence[str] = (),
    ignore_eos: bool = False,
) -> Generated:
    """Continues ``prompt`` with a model and its tokenizer, batch 1, until the first EOS
    (unless ``ignore_eos``), the first stop string in the continuation's text, or
    ``max_new_tokens``.

    The prompt is encoded after an EOS: in training every document follows one, so the
    prompt is read as the start of a document (an empty prompt starts one from nothing).
    Ids past the tokenizer's vocabulary (the model's padding) are never sampled.

    Raises:
      LengthError: a total length past the encoding's reach (``learned``'s table).
      GenerationError: bad sizes, sampling or stop strings.
    """
    stops = check_stops(stop)
    ids = np.concatenate([[tokenizer.eos_id], tokenizer.encode(prompt)]).astype(np.int32)
    P, impl = len(ids), impl or model_cfg.attention
    max_len = check_request(model_cfg, P, max_new_tokens, impl)
    eos_id = NO_EOS if ignore_eos else tokenizer.eos_id
    sampling = dataclasses.replace(sampling, vocab_size=tokenizer.vocab_size)
    prefill = prefill_program(model_cfg, max_len, impl, sampling)
    decode = decode_program(model_cfg, max_len, sampling)
    prompt_1xP, rng = ids[None], jax.random.key(seed)
    state = jax.block_until_ready(prefill(params, prompt_1xP, rng, eos_id))
    jax.block_until_ready(decode(params, state, P, rng))  # compiles the loop; runs no step

    index, searched, found = P, 0, None
    start = time.perf_counter()
    while True:
        state = decode(params, state, min(index + CHUNK, max_len - 1) if stops else max_len - 1, rng)
        # Fetched whole: indexing a device array would compile a program, inside the timing.
        index, lengths, done_B, tokens_BxS = jax.device_get(
            (state.index, state.lengths_B, state.done_B, state.tokens_BxS)
        )
        index, done, new_ids = int(index), bool(done_B[0]), tokens_BxS[0, P : lengths[0]]
        body = new_ids[:-1] if done else new_ids  # the EOS that ended it is not text
        text_of = lambda k: continuation_text(tokenizer, ids[1:], body[:k])
        if stops and (found := first_stop(text_of, len(body), searched, stops)):
            break
        searched = len(body)
        if done or index == max_len - 1:
            break
    decode_s = time.perf_counter() - start

    if found:
        new_tokens, text, end = found[0], found[1], "stop"
    else:
        new_tokens, text, end = len(new_ids), text_of(len(body)), "eos" if done else "length"
    return Generated(
        text=tokenizer.decode(ids[1:]) + text,
        prompt_tokens=P,
        new_tokens=new_tokens,
        train_len=model_cfg.train_len,
        decode_s=decode_s,
        steps=index - P,
        end=end,
        stop=found[2] if found else "",
    )


def generate_text(
    workdir: str,
    prompt: str,
    max_new_tokens: int,
    sampling: Sampling = Sampling(),
    seed: int = 0,
    impl: Optional[str] = None,
    stop: Sequence[str] = (),
    ignore_eos: bool = False,
) -> Generated:
    """:func:`complete` with the run in ``workdir``: until its first EOS (unless
    ``ignore_eos``), a stop string, or ``max_new_tokens``.

    Raises:
      EvalError: not a training run, or one without a checkpoint.
      LengthError: a total length past the encoding's reach (``learned``'s table).
      GenerationError: bad sizes, sampling or stop strings.
    """
    run = load_run(workdir)
    if run.step is None:
        raise EvalError(
            f"no checkpoint in {workdir}: train it first (python train.py --config=... --workdir={workdir})."
        )
    # Checked before the parameters load; complete checks again, at no cost.
    check_stops(stop)
    impl = impl or run.model_cfg.attention
    check_request(run.model_cfg, 1 + len(run.tokenizer.encode(prompt)), max_new_tokens, impl)
    return complete(run.model_cfg, run.params(), run.tokenizer, prompt, max_new_tokens, sampling, seed, impl, stop,
                    ignore_eos)  # fmt: skip
