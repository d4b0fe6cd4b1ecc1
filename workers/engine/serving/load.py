"""Serving a workload at a load: transformers' own continuous batching, measured over the steady window.

``measure_serving`` is what profile.py calls (issue 20; not wired yet). For each load level it
opens a ``ContinuousBatchingManager`` (``model.init_continuous_batching``: paged attention, the
FIFO scheduler, greedy decoding), and a load generator in this thread feeds it:

- closed loop, ``{"concurrency": N}``: N requests in flight; each completion submits the next;
- open loop, ``{"request_rate": R}``: requests submitted at seeded Poisson arrival times (R per
  second on average, exponential gaps from ``random.Random(seed)``), however many are in flight.

Requests go in workload order. Each is added with ``eos_token_id=-1`` (EOS ignored) and its own
``max_new_tokens``; a request that comes back with any other number of tokens fails the level.
transformers stamps every output token (``record_timestamps``, ``time.perf_counter`` in its
generation thread, when the token is on the host); the arrival is stamped here just before
``add_request``. The meter is begun and ended at the steady window's edges (figures.py
says how they are chosen); the figures come from ``figures.level_figures``.

Before each level, ``warmup_requests`` requests (the workload's first ones) are served by the
same manager and not measured: the first forward passes allocate the paged cache's tensors.
"""

from __future__ import annotations

import math
import random
import time

from .figures import Pass, RequestClock, Slo, pooled_figures
from .workload import WorkloadError

BACKEND = "transformers-continuous-batching"
DEFAULT_OPTIONS = {
    "seed": 0,
    "page_size": 16,            # tokens per page of the paged KV cache
    "max_batch_tokens": 512,    # token budget of one step (prefill chunks + decode tokens)
    "num_blocks": None,         # None: enough pages for every request in flight at its full length
    "ramp_requests": None,      # None: the concurrency (closed loop), 10% of the requests (open loop)
    "warmup_requests": None,    # None: min(4, requests)
    "level_timeout_s": 600.0,
    "max_in_flight": 256,       # open loop: the batch holds at most this many; later arrivals queue
    "idle_power_w": None,       # given: the result also holds the window's active energy
}


class ServingError(RuntimeError):
    """A level could not be measured (the manager failed, a request came back short, timeout)."""


def backend_version() -> str:
    import transformers

    return transformers.__version__


def _cb_config(prompts: list[list[int]], max_news: list[int], in_flight: int, options: dict):
    from transformers import ContinuousBatchingConfig

    page = int(options["page_size"])
    longest = max(len(p) + n for p, n in zip(prompts, max_news))
    blocks = options.get("num_blocks") or (in_flight + 1) * math.ceil(longest / page) + 2
    return ContinuousBatchingConfig(page_size=page, num_blocks=int(blocks),
                                    max_batch_tokens=int(options["max_batch_tokens"]),
                                    max_requests_per_batch=in_flight, allow_block_sharing=False,
                                    scheduler_type="fifo")


def open_manager(model, prompts, max_news, in_flight: int, options: dict):
    """A started ContinuousBatchingManager for greedy decoding, EOS off, sized for ``in_flight``."""
    from transformers import GenerationConfig

    generation = GenerationConfig(do_sample=False, num_beams=1, eos_token_id=-1, max_new_tokens=max(max_news))
    manager = model.init_continuous_batching(generation_config=generation,
                                             continuous_batching_config=_cb_config(prompts, max_news, in_flight,
                                                                                   options))
    manager.start()
    return manager


def close_manager(manager) -> None:
    manager.stop(block=True)
    manager.destroy()


class LoadGenerator:
    """Feeds one manager and keeps every request's clock; begins/ends the meter at the window's edges."""

    def __init__(self, manager, prompts, max_news, *, meter=None, ramp: int = 0, timeout_s: float = 600.0):
        self.manager, self.prompts, self.max_news = manager, prompts, max_news
        self.meter, self.ramp = meter, ramp
        self.deadline = time.perf_counter() + timeout_s
        self.timeout_s = timeout_s
        self.clocks: dict[int, RequestClock] = {}
        self.completed = 0
        self.window_start = self.window_end = None
        self.reading = None
        self.draining = False  # no window may open once the drain has begun

    def submit(self, index: int) -> None:
        prompt = self.prompts[index]
        arrival = time.perf_counter()
        request_id = self.manager.add_request(prompt, request_id=f"r{index}", max_new_tokens=self.max_news[index],
                                              record_timestamps=True, eos_token_id=-1)
        if request_id is None:
            raise ServingError(f"the continuous batching manager refused request {index}")
        self.clocks[index] = RequestClock(index, len(prompt), self.max_news[index], arrival)

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for one completed request and record it; whether one came."""
        if time.perf_counter() > self.deadline:
            raise ServingError(f"the level did not finish within its {self.timeout_s:g} s limit (level_timeout_s): "
                               f"{self.completed} of {len(self.clocks)} submitted requests completed; serve fewer "
                               "or shorter requests, or lower the load")
        result = self.manager.get_result(timeout=timeout)
        if result is None:
            if not self.manager.is_running():
                raise ServingError("transformers' continuous batching loop stopped: "
                                   f"{self.manager.background_thread_status.fatal_error!r}")
            return False
        if not result.is_finished():
            return False
        index = int(result.request_id[1:])
        if result.error is not None:
            raise ServingError(f"request {index} failed in continuous batching: {result.error}")
        expected = self.max_news[index]
        stamps = list(result.timestamps or [])
        if len(result.generated_tokens) != expected or len(stamps) != expected:
            raise ServingError(f"request {index} came back with {len(result.generated_tokens)} tokens "
                               f"({len(stamps)} stamped), expected exactly {expected}")
        self.clocks[index].token_s = stamps
        self.completed += 1
        if self.completed == self.ramp and self.meter is not None and not self.draining:
            self.open_window()
        return True

    def open_window(self) -> None:
        self.meter.begin()
        self.window_start = time.perf_counter()

    def close_window(self) -> None:
        self.draining = True
        if self.window_start is None or self.window_end is not None:
            return
        self.window_end = time.perf_counter()
        self.reading = self.meter.end()

    def closed_loop(self, concurrency: int) -> None:
        n = len(self.prompts)
        submitted = 0
        while submitted < min(concurrency, n):
            self.submit(submitted)
            submitted += 1
        while self.completed < n:
            if not self.wait(0.05):
                continue
            if submitted < n:
                self.submit(submitted)
                submitted += 1
            elif self.completed > self.ramp:
                self.close_window()  # the first completion after the last submission: the drain begins

    def open_loop(self, rate: float, seed: int) -> None:
        n = len(self.prompts)
        rng = random.Random(seed)
        due, t = [], time.perf_counter()
        for _ in range(n):
            due.append(t)
            t += rng.expovariate(rate)
        submitted = 0
        while self.completed < n:
            now = time.perf_counter()
            while submitted < n and now >= due[submitted]:
                self.submit(submitted)
                submitted += 1
                if submitted == n:
                    self.close_window()  # the last arrival: the drain begins
            wait = min(0.05, max(0.0, due[submitted] - now)) if submitted < n else 0.05
            self.wait(wait)


def _check_level(level: dict, n: int, ramp: int) -> None:
    if "concurrency" in level:
        c = level["concurrency"]
        if not isinstance(c, int) or isinstance(c, bool) or c < 1:
            raise WorkloadError(f"concurrency must be a positive integer, got {c!r}")
        if n < ramp + c:
            raise WorkloadError(f"{n} requests are too few for concurrency {c}: the ramp-up ({ramp} requests) and the "
                                f"drain ({c}) leave no steady window; give at least {ramp + c} requests")
    elif "request_rate" in level:
        r = level["request_rate"]
        if not isinstance(r, (int, float)) or isinstance(r, bool) or not (r > 0 and math.isfinite(r)):
            raise WorkloadError(f"request_rate must be a positive number of requests per second, got {r!r}")
        if n < ramp + 2:
            raise WorkloadError(f"{n} requests are too few for an open-loop level: give at least {ramp + 2}")
    else:
        raise WorkloadError(f"a load level is {{'concurrency': N}} or {{'request_rate': R}}, got {level!r}")


def _ramp(level: dict, n: int, options: dict) -> int:
    if options.get("ramp_requests") is not None:
        return int(options["ramp_requests"])
    if "concurrency" in level:
        return int(level["concurrency"])
    return max(1, math.ceil(0.1 * n))


def level_key(level: dict) -> str:
    return "concurrency" if "concurrency" in level else "request_rate"


def level_label(level: dict) -> str:
    key = level_key(level)
    return f"concurrency {level[key]}" if key == "concurrency" else f"{level[key]:g} requests/s"


def serve_pass(model, prompts, max_news, level: dict, *, meter, options: dict, warm: int | None = None):
    """Serve the whole workload once at ``level``: (the pass's clocks and steady window, what else
    the figures record). ``warm``: requests served first and not measured (None: the option)."""
    options = {**DEFAULT_OPTIONS, **(options or {})}
    n = len(prompts)
    ramp = _ramp(level, n, options)
    _check_level(level, n, ramp)
    # closed loop: the concurrency; open loop: every request may be in flight, up to the cap (the
    # paged cache is sized for them up front)
    in_flight = level.get("concurrency") or min(n, int(options["max_in_flight"]))
    if warm is None:
        warm = options["warmup_requests"]
        warm = min(4, n) if warm is None else int(warm)
    manager = open_manager(model, prompts, max_news, in_flight, options)
    attention = getattr(model.config, "_attn_implementation", None)  # as continuous batching set it
    try:
        warm_started = time.perf_counter()
        if warm:
            warmup = LoadGenerator(manager, prompts[:warm], max_news[:warm], timeout_s=options["level_timeout_s"])
            warmup.closed_loop(min(warm, in_flight))
        warmup_s = time.perf_counter() - warm_started
        driver = LoadGenerator(manager, prompts, max_news, meter=meter, ramp=ramp,
                               timeout_s=options["level_timeout_s"])
        if "concurrency" in level:
            driver.closed_loop(level["concurrency"])
        else:
            driver.open_loop(float(level["request_rate"]), int(options["seed"]))
    finally:
        close_manager(manager)
    if driver.reading is None:
        raise ServingError(f"no steady window at {level_label(level)}: the ramp-up ({ramp} requests) did not "
                           "complete before the drain began; serve more requests or lower the load")
    clocks = [driver.clocks[i] for i in range(n)]
    info = {"ramp_requests": ramp, "warmup_requests": warm, "warmup_s": warmup_s, "attention": attention,
            "flags": list(driver.reading.flags), "avg_power_w": driver.reading.avg_power_w}
    return Pass(clocks, driver.window_start, driver.window_end, driver.reading.energy_j), info


def level_document(level: dict, passes: list, infos: list[dict], *, slo: Slo, meter, options: dict) -> dict:
    """The figures of one level over its passes, with how they were measured."""
    options = {**DEFAULT_OPTIONS, **(options or {})}
    figures = pooled_figures(passes, slo=slo, idle_power_w=options.get("idle_power_w"))
    key = level_key(level)
    figures = {key: level[key], **figures}
    flags = figures["flags"] + [f for info in infos for f in info["flags"]]
    figures["flags"] = list(dict.fromkeys(flags))
    powers = [info["avg_power_w"] for info in infos if info.get("avg_power_w") is not None]
    figures.update({"ramp_requests": infos[0]["ramp_requests"], "warmup_requests": infos[0]["warmup_requests"],
                    "energy_method": meter.method, "energy_estimated": bool(meter.estimated),
                    "energy_uncertainty_rel": meter.uncertainty_rel,
                    "avg_power_w": sum(powers) / len(powers) if powers else None, "attention": infos[0]["attention"],
                    "backend": BACKEND, "backend_version": backend_version(),
                    "scheduler": "fifo", "decoding": "greedy, EOS ignored, exactly max_new_tokens per request",
                    "page_size": int(options["page_size"]), "max_batch_tokens": int(options["max_batch_tokens"])})
    return figures


def serve_level(model, prompts, max_news, level: dict, *, slo: Slo, meter, options: dict) -> dict:
    """Serve the whole workload once at ``level`` and return its figures (figures.py)."""
    options = {**DEFAULT_OPTIONS, **(options or {})}
    one, info = serve_pass(model, prompts, max_news, level, meter=meter, options=options)
    return level_document(level, [one], [info], slo=slo, meter=meter, options=options)


def measure_serving(model, tokenizer, requests, *, load_levels: list[dict], slo: Slo | None = None, meter,
                    device: str = "cpu", options: dict | None = None) -> list[dict]:
    """One figures dict per load level (in the order given) of serving ``requests`` (workload.py's
    ``WorkloadRequest`` list) with ``model`` (a transformers causal LM already on ``device``).

    ``tokenizer``: the model's tokenizer or None (then prompts must be token ids or lengths).
    ``meter``: a ``meters.Meter`` for ``device``. ``options``: see ``DEFAULT_OPTIONS``."""
    from .workload import prompt_ids

    options = {**DEFAULT_OPTIONS, **(options or {})}
    if not load_levels:
        raise WorkloadError("no load level: give at least one concurrency or request rate")
    config = model.config.to_dict()
    prompts = prompt_ids(requests, config, tokenizer, seed=int(options["seed"]))
    max_news = [r.max_new_tokens for r in requests]
    for level in load_levels:
        _check_level(level, len(prompts), _ramp(level, len(prompts), options))
    slo = slo or Slo()
    results = []
    for level in load_levels:
        figures = serve_level(model, prompts, max_news, level, slo=slo, meter=meter, options=options)
        figures["device"] = device
        results.append(figures)
    return results
