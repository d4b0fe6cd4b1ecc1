"""Serving workloads: the requests a language model is measured serving (issue 20).

A workload is a JSONL file, one request per line::

    {"prompt": "Some text ...", "max_new_tokens": 64}
    {"prompt_tokens": [101, 2023, 2003], "max_new_tokens": 16}   # the prompt's token ids
    {"prompt_tokens": 48, "max_new_tokens": 32}                   # 48 tokens cut from the shipped corpus

``prompt`` is text, tokenised by the model's own tokenizer; ``prompt_tokens`` is either the
prompt's token ids or a length (that many tokens cut from the shipped corpus, tokenised the same
way, or seeded random ids when the model has no tokenizer: a dense model does the same work per
token whichever tokens they are). Every request gets exactly ``max_new_tokens`` new tokens (EOS
is ignored). Blank lines are skipped; anything else that is not such a request is refused with
its line number.

The shipped default workload (``data/serving_workload.jsonl``, built by
``build_default_workload``) holds ``DEFAULT_REQUESTS`` requests cut from
``data/serving_corpus.txt`` (prose written for this project, CC0): prompt lengths in words and
output lengths in tokens drawn, seeded, from log-normal distributions (``DEFAULT_PROMPT_WORDS``,
``DEFAULT_NEW_TOKENS``: median, sigma of the log, clipped range), documented with the file's
realised statistics in ``data/README.md``.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

from ..errors import LoadError

DATA = Path(__file__).resolve().parents[1] / "data"
CORPUS_PATH = DATA / "serving_corpus.txt"
DEFAULT_WORKLOAD_PATH = DATA / "serving_workload.jsonl"
MAX_REQUESTS = 100_000
MAX_BYTES = 64 * 1024 * 1024  # a workload, whole: 100,000 requests of ~600 characters
MAX_NEW_TOKENS = 4096
MAX_PROMPT_TOKENS = 32768  # the web's cap on a prompt (audit/services/options.py)
DEFAULT_SEED = 0
DEFAULT_REQUESTS = 64
# (median, sigma of the natural log, min, max): the documented length distributions of the default.
DEFAULT_PROMPT_WORDS = (48, 0.8, 8, 400)
DEFAULT_NEW_TOKENS = (64, 0.7, 8, 512)
_CONTEXT_KEYS = ("n_positions", "max_position_embeddings", "n_ctx", "max_sequence_length", "seq_length")


class WorkloadError(LoadError):
    """A workload that cannot be served; the message says which line and why."""


@dataclass(frozen=True)
class WorkloadRequest:
    """One request as the file states it (exactly one of the three prompt forms is set)."""

    line: int
    max_new_tokens: int
    prompt: str | None = None
    prompt_ids: tuple[int, ...] | None = None
    prompt_length: int | None = None


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _parse_line(number: int, line: str) -> WorkloadRequest:
    where = f"line {number}"
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise WorkloadError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python parses
        raise WorkloadError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(row, dict):
        raise WorkloadError(f"{where}: a request is a JSON object, got {type(row).__name__}")
    unknown = sorted(set(row) - {"prompt", "prompt_tokens", "max_new_tokens"})
    if unknown:
        raise WorkloadError(f"{where}: unknown field(s) {', '.join(unknown)}; a request has prompt or "
                            "prompt_tokens, and max_new_tokens")
    new = row.get("max_new_tokens")
    if not _positive_int(new):
        raise WorkloadError(f"{where}: max_new_tokens must be a positive integer, got {new!r}")
    if new > MAX_NEW_TOKENS:
        raise WorkloadError(f"{where}: max_new_tokens {new} is over the cap of {MAX_NEW_TOKENS}")
    if ("prompt" in row) == ("prompt_tokens" in row):
        raise WorkloadError(f"{where}: give exactly one of prompt (text) and prompt_tokens (ids or a length)")
    if "prompt" in row:
        text = row["prompt"]
        if not isinstance(text, str) or not text.strip():
            raise WorkloadError(f"{where}: prompt must be non-empty text")
        return WorkloadRequest(number, new, prompt=text)
    tokens = row["prompt_tokens"]
    if _positive_int(tokens) and tokens > MAX_PROMPT_TOKENS or isinstance(tokens, list) and len(tokens) > MAX_PROMPT_TOKENS:
        raise WorkloadError(f"{where}: a prompt of more than {MAX_PROMPT_TOKENS} tokens is over the cap")
    if _positive_int(tokens):
        return WorkloadRequest(number, new, prompt_length=tokens)
    if isinstance(tokens, list) and tokens and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0
                                                     for t in tokens):
        return WorkloadRequest(number, new, prompt_ids=tuple(tokens))
    raise WorkloadError(f"{where}: prompt_tokens must be a positive length or a non-empty list of "
                        "non-negative token ids")


def parse_workload(text: str) -> list[WorkloadRequest]:
    """The requests of a JSONL workload; WorkloadError (line number and reason) on anything else."""
    if len(text) > MAX_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise WorkloadError(f"the workload is over {MAX_BYTES // (1024 * 1024)} MiB; split it or shorten its prompts")
    requests = []
    # lines end at "\n" only: U+2028 and its kin are legal inside a JSON string
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        requests.append(_parse_line(number, line))
        if len(requests) > MAX_REQUESTS:
            raise WorkloadError(f"the workload has more than {MAX_REQUESTS} requests")
    if not requests:
        raise WorkloadError("the workload is empty: no request in it")
    return requests


def load_workload(path: str | Path | None = None) -> list[WorkloadRequest]:
    """The workload file at ``path`` (the shipped default when None)."""
    path = Path(path) if path is not None else DEFAULT_WORKLOAD_PATH
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise WorkloadError(f"{path.name}: not UTF-8 text") from None
    return parse_workload(text)


# --- token ids for one model -----------------------------------------------------------------


def context_positions(config: dict) -> tuple[str, int] | None:
    """(config key, positions) of the model's context, or None when the config states none."""
    for key in _CONTEXT_KEYS:
        value = config.get(key)
        if _positive_int(value):
            return key, value
    return None


def _corpus_ids(tokenizer, vocab_size: int, length: int, seed: int) -> list[int]:
    if tokenizer is not None:
        ids = list(tokenizer(CORPUS_PATH.read_text(encoding="utf-8"), add_special_tokens=False)["input_ids"])
        if ids:
            return ids
    rng = random.Random(seed)
    return [rng.randrange(vocab_size) for _ in range(max(length, 4096))]


def prompt_ids(requests: list[WorkloadRequest], config: dict, tokenizer=None, *,
               seed: int = DEFAULT_SEED) -> list[list[int]]:
    """Each request's prompt as token ids for this model (``config``: its config.json as a dict).

    Refuses (WorkloadError, with the line) a prompt the model cannot take: text without a
    tokenizer, ids beyond the vocabulary, or prompt + max_new_tokens beyond the context."""
    vocab = config.get("vocab_size")
    if not _positive_int(vocab):
        raise WorkloadError("the model's config has no vocab_size, which serving needs")
    if config.get("is_encoder_decoder"):
        raise WorkloadError("serving workloads are for decoder-only language models (transformers' continuous "
                            "batching has no encoder-decoder path); this model is encoder-decoder")
    context = context_positions(config)
    longest = max((r.prompt_length or 0) for r in requests)
    corpus = None
    out = []
    for index, request in enumerate(requests):
        where = f"line {request.line}"
        if request.prompt is not None:
            if tokenizer is None:
                raise WorkloadError(f"{where}: the prompt is text but the model has no tokenizer; give "
                                    "prompt_tokens instead")
            ids = list(tokenizer(request.prompt)["input_ids"])
            if not ids:
                raise WorkloadError(f"{where}: the tokenizer gave no tokens for the prompt")
        elif request.prompt_ids is not None:
            ids = list(request.prompt_ids)
        else:
            if corpus is None:
                corpus = _corpus_ids(tokenizer, vocab, longest, seed)
            start = (index * 97) % len(corpus)  # each request starts at a different place in the text
            ids = [corpus[(start + j) % len(corpus)] for j in range(request.prompt_length)]
        if max(ids) >= vocab:
            raise WorkloadError(f"{where}: token id {max(ids)} is beyond the model's vocabulary of {vocab}")
        if context is not None:
            key, n = context
            if len(ids) + request.max_new_tokens > n:
                raise WorkloadError(f"{where}: prompt {len(ids)} + new {request.max_new_tokens} tokens = "
                                    f"{len(ids) + request.max_new_tokens} do not fit the model's context of {n} "
                                    f"positions ({key} in config.json)")
        out.append(ids)
    return out


# --- the shipped default ---------------------------------------------------------------------


def _lognormal_int(rng: random.Random, spec) -> int:
    median, sigma, low, high = spec
    return int(min(high, max(low, round(rng.lognormvariate(math.log(median), sigma)))))


def build_default_workload(seed: int = DEFAULT_SEED, n: int = DEFAULT_REQUESTS) -> str:
    """The default workload's JSONL text: ``n`` prompts of consecutive corpus words (lengths from
    ``DEFAULT_PROMPT_WORDS``, each from a seeded place, wrapping round the corpus), each with a
    ``max_new_tokens`` from ``DEFAULT_NEW_TOKENS``."""
    words = CORPUS_PATH.read_text(encoding="utf-8").split()
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        length = _lognormal_int(rng, DEFAULT_PROMPT_WORDS)
        new = _lognormal_int(rng, DEFAULT_NEW_TOKENS)
        start = rng.randrange(len(words))
        prompt = " ".join(words[(start + j) % len(words)] for j in range(length))
        lines.append(json.dumps({"prompt": prompt, "max_new_tokens": new}, ensure_ascii=False))
    return "\n".join(lines) + "\n"


def length_statistics(requests: list[WorkloadRequest]) -> dict:
    """Prompt lengths (words of text, else tokens) and max_new_tokens: min, p10, median, p90, max."""
    def stats(values):
        values = sorted(values)
        pick = lambda q: values[min(len(values) - 1, int(q * len(values)))]  # noqa: E731 - nearest rank
        return {"min": values[0], "p10": pick(0.1), "median": pick(0.5), "p90": pick(0.9), "max": values[-1]}

    prompts = [len(r.prompt.split()) if r.prompt is not None else (r.prompt_length or len(r.prompt_ids or ()))
               for r in requests]
    return {"requests": len(requests), "prompt": stats(prompts), "max_new_tokens": stats([r.max_new_tokens
                                                                                         for r in requests])}


if __name__ == "__main__":  # regenerate the shipped default: python -m workers.engine.serving.workload
    DEFAULT_WORKLOAD_PATH.write_text(build_default_workload(), encoding="utf-8")
    print(json.dumps(length_statistics(load_workload()), indent=1))
