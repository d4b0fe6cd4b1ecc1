"""The figures of one serving load level, from its requests' clocks and the steady window's energy.

Pure Python (no torch): a later session can recompute or test them without a model.

Steady window (the ML.ENERGY way: ramp-up and drain excluded). It is chosen online by the load
generator (``serving.py``), which begins and ends the energy meter at its edges:

- start: when the ``ramp``-th request has completed (default: as many as the concurrency, i.e.
  the first wave, all prefilled together, is over and the batch mixes prefill and decode);
- end, closed loop: the first completion after the last request was submitted (from then on
  fewer than ``concurrency`` requests are in flight: the drain); open loop: the last arrival.

What counts in the window:

- output tokens: every token whose timestamp falls inside it, whichever request it belongs to;
- requests: those that completed inside it (latency percentiles and ``requests_per_s`` are over
  them, so a request is counted in one place only);
- energy: the meter's reading over exactly the window.

Attribution of the window's energy to requests that shared batches (``energy_j_per_request``):
**by tokens**. Every token that went through the model inside the window weighs one: a request's
prompt tokens at the instant its prefill ended (its first token), and each of its output tokens
at the instant it came out. Request r gets ``E * w_r / sum(w)``, so the per-request energies add
up to the window's energy exactly. Why tokens and not time: continuous batching schedules every
step by a token budget (``max_batch_tokens``), so a step's cost is shared by the tokens in it; a
share by time in flight would charge a request for the steps it waited in the queue and let a
long-running request absorb the energy of the ones decoding beside it. A request only partly
inside the window holds the fraction ``f_r`` (its tokens inside / all its tokens) of a whole
request; ``energy_j_per_request = E / sum(f_r)``, the energy of one whole request.

``energy_j_per_output_token`` is the window's whole energy (prefill included) over its output
tokens, as ML.ENERGY reports it; ``energy_j_per_good_token`` is the same energy over the output
tokens of requests that met both SLO targets (the energy goodput).

Definitions, as ``vllm bench serve`` has them: TTFT = first token - arrival; TPOT = (last token -
first token) / (output tokens - 1), for requests of at least 2 tokens; ITL = every gap between
two consecutive tokens of a request, pooled; E2E = last token - arrival.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

PERCENTILES = (50, 95, 99)
MAX_DETAIL = 1024  # requests whose detail the result keeps (the first ones of the last pass)
MAX_TOKEN_TIMES = 32  # of those, requests whose every token time is kept (a result stays small)
FEW_REQUESTS = 5  # fewer completed requests than this in the window: its percentiles are flagged


@dataclass
class Slo:
    """Latency targets a request must both meet to count as good (None: no target)."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None

    def met(self, ttft_ms: float, tpot_ms: float | None) -> bool:
        return ((self.ttft_ms is None or ttft_ms <= self.ttft_ms)
                and (self.tpot_ms is None or tpot_ms is None or tpot_ms <= self.tpot_ms))


@dataclass
class RequestClock:
    """One request's clock (seconds, ``time.perf_counter``), filled by the load generator."""

    index: int
    prompt_tokens: int
    max_new_tokens: int
    arrival_s: float
    token_s: list = field(default_factory=list)  # when each output token was out

    @property
    def first_token_s(self) -> float:
        return self.token_s[0]

    @property
    def end_s(self) -> float:
        return self.token_s[-1]

    def ttft_ms(self) -> float:
        return (self.first_token_s - self.arrival_s) * 1e3

    def tpot_ms(self) -> float | None:
        n = len(self.token_s)
        return (self.end_s - self.first_token_s) * 1e3 / (n - 1) if n > 1 else None

    def itl_ms(self) -> list[float]:
        return [(b - a) * 1e3 for a, b in zip(self.token_s, self.token_s[1:])]

    def e2e_ms(self) -> float:
        return (self.end_s - self.arrival_s) * 1e3

    def tokens_in(self, start: float, end: float) -> int:
        """Tokens through the model inside [start, end): prompt at the first token, then outputs."""
        outputs = sum(1 for t in self.token_s if start <= t < end)
        prompt = self.prompt_tokens if start <= self.first_token_s < end else 0
        return outputs + prompt


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default), as vLLM's bench reports."""
    if not values:
        return None
    values = sorted(values)
    rank = (len(values) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(values) - 1)
    return values[low] + (values[high] - values[low]) * (rank - low)


def _spread(name: str, values: list[float]) -> dict:
    return {f"{name}_ms_p{q}": percentile(values, q) for q in PERCENTILES}


def attribute_energy(clocks: list[RequestClock], start: float, end: float, energy_j: float) -> list[dict]:
    """Each request's share of the window's energy, by tokens (see the module docstring)."""
    weights = [c.tokens_in(start, end) for c in clocks]
    total = sum(weights)
    shares = []
    for clock, weight in zip(clocks, weights):
        whole = clock.prompt_tokens + len(clock.token_s)
        shares.append({"index": clock.index, "tokens_in_window": weight,
                       "fraction_in_window": weight / whole if whole else 0.0,
                       "energy_j": energy_j * weight / total if total else 0.0})
    return shares


@dataclass
class Pass:
    """One serving of the workload at one load level: the requests' clocks and the steady window."""

    clocks: list
    start: float
    end: float
    energy_j: float


def level_figures(clocks: list[RequestClock], *, start: float, end: float, energy_j: float, slo: Slo,
                  idle_power_w: float | None = None) -> dict:
    """Every figure of one load level (names as in issue 20), plus per-request detail in ``requests``."""
    return pooled_figures([Pass(clocks, start, end, energy_j)], slo=slo, idle_power_w=idle_power_w)


def pooled_figures(passes: list[Pass], *, slo: Slo, idle_power_w: float | None = None) -> dict:
    """The figures of one load level served ``len(passes)`` times (the paired rounds): the windows
    are pooled, so every ratio is a sum over all of them (energy over tokens, requests over seconds)
    and every percentile is over all the requests completed in any window. ``requests`` (the
    per-request detail, whose energies add up to ``requests_window_energy_j``) is the last pass's."""
    if not passes:
        raise ValueError("no pass to take figures from")
    duration = energy_j = equivalents = 0.0
    done, output_tokens, good_tokens, good_done = [], 0, 0, 0
    for p in passes:
        if p.end - p.start <= 0:
            raise ValueError("the steady window is empty")
        duration += p.end - p.start
        energy_j += p.energy_j
        verdicts = {c.index: slo.met(c.ttft_ms(), c.tpot_ms()) for c in p.clocks}
        window_done = [c for c in p.clocks if p.start <= c.end_s <= p.end]
        done += window_done
        output_tokens += sum(1 for c in p.clocks for t in c.token_s if p.start <= t < p.end)
        good_tokens += sum(1 for c in p.clocks if verdicts[c.index] for t in c.token_s if p.start <= t < p.end)
        good_done += sum(1 for c in window_done if verdicts[c.index])
        equivalents += sum(s["fraction_in_window"] for s in attribute_energy(p.clocks, p.start, p.end, p.energy_j))
    flags = []
    if len(done) < FEW_REQUESTS:
        flags.append("few-requests-in-window")
    figures = {
        **_spread("ttft", [c.ttft_ms() for c in done]),
        **_spread("tpot", [t for t in (c.tpot_ms() for c in done) if t is not None]),
        **_spread("itl", [gap for c in done for gap in c.itl_ms()]),
        **_spread("e2e", [c.e2e_ms() for c in done]),
        "requests_per_s": len(done) / duration,
        "output_tokens_per_s": output_tokens / duration,
        "energy_j_per_output_token": energy_j / output_tokens if output_tokens else None,
        "energy_j_per_request": energy_j / equivalents if equivalents else None,
        "energy_attribution": "tokens",
        "goodput_requests_per_s": good_done / duration,
        "energy_j_per_good_token": energy_j / good_tokens if good_tokens else None,
        "slo_ttft_ms": slo.ttft_ms,
        "slo_tpot_ms": slo.tpot_ms,
        "steady_window_s": duration,
        "steady_requests": len(done),
        "steady_good_requests": good_done,
        "steady_output_tokens": output_tokens,
        "steady_good_output_tokens": good_tokens,
        "steady_request_equivalents": equivalents,
        "energy_j_window": energy_j,
        "windows": len(passes),
        "requests_total": sum(len(p.clocks) for p in passes),
        "flags": flags,
    }
    if idle_power_w is not None:
        figures["idle_power_w"] = idle_power_w
        figures["active_energy_j_window"] = max(0.0, energy_j - idle_power_w * duration)
    detail = request_detail(passes[-1], slo)
    figures["requests"] = detail[:MAX_DETAIL]  # a result stays small whatever the workload's size
    for request in figures["requests"][MAX_TOKEN_TIMES:]:
        request["token_ms_from_arrival"] = []
    figures["requests_detail_truncated"] = len(detail) > MAX_DETAIL
    figures["requests_window_energy_j"] = passes[-1].energy_j
    return figures


def request_detail(p: Pass, slo: Slo) -> list[dict]:
    """Each request of one pass: its share of the window's energy and its clock."""
    shares = attribute_energy(p.clocks, p.start, p.end, p.energy_j)
    return [
        {**share, "prompt_tokens": c.prompt_tokens, "output_tokens": len(c.token_s),
         "ttft_ms": c.ttft_ms(), "tpot_ms": c.tpot_ms(), "e2e_ms": c.e2e_ms(),
         "met_slo": slo.met(c.ttft_ms(), c.tpot_ms()),
         "arrival_ms_from_window_start": (c.arrival_s - p.start) * 1e3,
         "end_ms_from_window_start": (c.end_s - p.start) * 1e3,
         "token_ms_from_arrival": [round((t - c.arrival_s) * 1e3, 3) for t in c.token_s],
         "completed_in_window": p.start <= c.end_s <= p.end}
        for c, share in zip(p.clocks, shares)]
