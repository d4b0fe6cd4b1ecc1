"""The engine child's result document, checked before a byte of it is stored.

The child runs an uploaded model; code in the model may have taken it over and can print any
JSON it likes (Python's json.loads even accepts NaN and Infinity). So its result is untrusted
input, like an upload: every part the worker stores is parsed here against a schema
(pydantic v2, strict types, finite numbers in physical ranges, bounded strings and lists).
Keys the schema does not name are dropped, so nothing unexpected reaches a JSON column.

- A variant with an invalid figure becomes a failed variant whose error names the figure
  ("the engine reported an invalid figure: variants[2].measurements[0].energy_j_per_inference
  = nan"); the other variants are kept.
- An invalid audit-level part (drift, scenario, warnings, the child's fingerprint details ...)
  refuses the whole result: ``ResultRefused`` with the same kind of reason.
- What the worker knows better is not taken from here at all (the carbon basis, the hardware
  fingerprint, the trade-off, frontier and grade derived from the variants, the power sweep):
  workers/runner.py ``accept_result`` sets those. ``sandbox`` is run_engine's own record.

No Django here: the worker imports it between the sandbox and the database.
"""
from __future__ import annotations

import json
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, TypeAdapter, ValidationError, model_serializer

from workers.engine import SCHEMA_VERSION

# Sizes: far above what an honest engine writes (its power trace is downsampled to 500 points,
# its layer profile to 50 entries, a result is ~100 KB), far below what hurts a page or a row.
MAX_RESULT_BYTES = 8 * 1024 * 1024  # the whole accepted document, re-serialized
MAX_TEXT = 4096  # one note, warning, reason or error line
MAX_NAME = 200  # names, labels, sources
MAX_KEY = 100  # keys of the small maps (fidelity, recipe parameters, assumptions ...)
MAX_TEXTS = 256  # notes, warnings, flags, reasons per list
MAX_VARIANTS = 256  # recipes asked for, parameterised specs included
MAX_MEASUREMENTS = 1024  # per variant: batch sizes x power-limit steps
MAX_SERIES = 4096  # window means / energies per measurement
MAX_TRACE_POINTS = 10_000
MAX_LAYERS = 10_000
MAX_MAP = 64

# Physical bounds: a figure outside them is a bug or a lie, never a measurement.
MAX_POWER_W = 100_000.0  # 100 kW: above any one host, eight GPUs included
MAX_ENERGY_J = 1e9  # one inference or request: 100 kW for almost three hours
MAX_MS = 1e8  # ~28 hours, past any audit's time limit
MAX_SECONDS = 1e6
MAX_RATE = 1e15  # samples, tokens per second or per joule
MAX_REL = 1e3  # relative uncertainties, coefficients of variation
MAX_RATIO = 1e6
MAX_SIGNED = 1e6  # relative changes
MAX_METRIC = 1e15  # a metric's or fidelity figure's value (perplexity can be large)
BIGINT = 2**63 - 1  # the database's bigint: parameters, FLOPs, bytes
INT32 = 2**31 - 1  # the database's integer: batch sizes, iterations, samples, tokens


def _float(lo: float, hi: float, *, gt: bool = False):
    bounds = {"gt": lo} if gt else {"ge": lo}
    return Annotated[float, Field(le=hi, allow_inf_nan=False, **bounds)]


def _list(item, n: int):
    return Annotated[list[item], Field(max_length=n)]


Energy = _float(0.0, MAX_ENERGY_J)
Power = _float(0.0, MAX_POWER_W)
Ms = _float(0.0, MAX_MS)
Seconds = _float(0.0, MAX_SECONDS)
Rate = _float(0.0, MAX_RATE)
Rel = _float(0.0, MAX_REL)
Share = _float(0.0, 1.0)
Ratio = _float(0.0, MAX_RATIO, gt=True)
Signed = _float(-MAX_SIGNED, MAX_SIGNED)
MetricValue = _float(-MAX_METRIC, MAX_METRIC)
Count = Annotated[int, Field(ge=0, le=BIGINT)]
Count32 = Annotated[int, Field(ge=0, le=INT32)]
Positive32 = Annotated[int, Field(ge=1, le=INT32)]
Text = Annotated[str, Field(max_length=MAX_TEXT)]
Name = Annotated[str, Field(max_length=MAX_NAME)]
Key = Annotated[str, Field(max_length=MAX_KEY)]
Token = Annotated[str, Field(max_length=60, pattern=r"^[^\x00-\x1f\x7f]*$")]  # identifiers, one line
Texts = _list(Text, MAX_TEXTS)
Recipe = Annotated[Token, Field(min_length=1)]  # what was asked for, even an unknown recipe
Grade = Literal["A", "B", "C", "D"]
Interval = Annotated[list[Ratio], Field(min_length=2, max_length=2)]
# one parameter or assumption: a flag, a number, a short text
Scalar = Union[StrictBool, Annotated[int, Field(ge=-BIGINT, le=BIGINT)], MetricValue, Text, None]
ScalarMap = Annotated[dict[Key, Scalar], Field(max_length=MAX_MAP)]
FigureMap = Annotated[dict[Key, Optional[MetricValue]], Field(max_length=MAX_MAP)]


class Part(BaseModel):
    """Strict types (no "1.5" for 1.5), finite numbers, unknown keys dropped."""

    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False, str_max_length=MAX_TEXT)


BoundaryName = Literal["device", "host", "facility"]


class Boundary(Part):
    """One boundary of an energy figure (workers/engine/meters/boundary.py): its joules per
    inference, how they were obtained, and for host and facility the basis of the share / PUE."""
    j_per_inference: Energy
    method: Annotated[str, Field(max_length=120)]
    estimated: bool
    share: Optional[Share] = None
    share_source: Optional[Text] = None
    rule: Optional[Text] = None
    host_reading: Optional[Token] = None
    host_estimated: Optional[bool] = None
    cpu_j_per_inference: Optional[Energy] = None
    dram_j_per_inference: Optional[Energy] = None
    pue: Optional[_float(1.0, 10.0)] = None
    pue_known: Optional[bool] = None
    pue_source: Optional[Text] = None
    uncertainty_rel: Optional[Rel] = None
    host_uncertainty_rel: Optional[Rel] = None

    @model_serializer(mode="wrap")
    def _given_only(self, handler):
        """Stored as the engine gave it: a device boundary gains no empty share, rule or PUE keys."""
        return {k: v for k, v in handler(self).items() if v is not None}


class Measurement(Part):
    batch_size: Positive32
    warmup_calls: Optional[Count32] = None
    warmup_s: Optional[Seconds] = None
    warmup_stable: Optional[bool] = None
    input_shape: Annotated[dict[Key, _list(Count32, 16)], Field(max_length=MAX_MAP)] = {}
    # required in every schema (audit/services/results.py MEASUREMENT_FIELDS)
    latency_ms_mean: Ms
    throughput_samples_per_s: Rate
    energy_j_per_inference: Energy
    energy_j_per_inference_active: Energy
    energy_j_per_sample: Energy
    wh_per_1000_inferences: Energy
    samples_per_joule: Rate
    avg_power_w: Power
    idle_power_w: Power
    energy_method: Annotated[Token, Field(max_length=30)]
    energy_estimated: bool
    energy_uncertainty_rel: Rel
    co2e_g_per_inference: _float(0.0, MAX_ENERGY_J)  # recomputed by the worker from its own carbon basis
    iterations: Count32
    windows: Count32
    window_s: Seconds
    # optional: throughput timing mode, schema 1, forward measurements
    latency_ms_std: Optional[Ms] = None
    latency_ms_p50: Optional[Ms] = None
    latency_ms_p95: Optional[Ms] = None
    latency_ms_p99: Optional[Ms] = None
    latency_ci95_ms: Optional[Ms] = None
    peak_memory_bytes: Optional[Count] = None
    cv: Optional[Rel] = None
    latency_ci95_rel: Optional[Rel] = None
    window_cv: Optional[Rel] = None
    energy_uncertainty_method_rel: Optional[Rel] = None
    energy_uncertainty_stat_rel: Optional[Rel] = None
    energy_assumptions: Optional[ScalarMap] = None
    meter_resolution_s: Optional[Seconds] = None
    meter_overhead_s: Optional[Seconds] = None
    prompt_tokens: Optional[Count32] = None
    new_tokens: Optional[Count32] = None
    ttft_ms_p50: Optional[Ms] = None
    ttft_ms_p95: Optional[Ms] = None
    tpot_ms_p50: Optional[Ms] = None
    tpot_ms_p95: Optional[Ms] = None
    output_tokens_per_s: Optional[Rate] = None
    energy_j_per_prompt_token: Optional[Energy] = None
    energy_j_per_output_token: Optional[Energy] = None
    energy_j_per_output_token_uncertainty_rel: Optional[Rel] = None
    energy_j_per_request: Optional[Energy] = None
    prefill_energy_share: Optional[Share] = None
    power_limit_w: Optional[Power] = None
    power_trace: _list(Annotated[list[_float(0.0, MAX_POWER_W)], Field(min_length=2, max_length=2)],
                       MAX_TRACE_POINTS) = []  # [seconds, watts]
    flags: _list(Token, MAX_TEXTS) = []
    quality_reasons: Texts = []
    energy_domains: Annotated[dict[Key, Energy], Field(max_length=16)] = {}
    # which boundary energy_j_per_inference is, every boundary measured or estimated, and the one
    # the grams of CO2e rest on (issue 23)
    energy_boundary: Optional[BoundaryName] = None
    energy_boundaries: Optional[dict[BoundaryName, Boundary]] = None
    co2e_boundary: Optional[BoundaryName] = None
    window_means_ms: _list(Ms, MAX_SERIES) = []
    window_energy_j: _list(Energy, MAX_SERIES) = []
    scenario: Literal["forward", "generation"] = "forward"
    timing_mode: Literal["latency", "throughput"] = "latency"
    quality_grade: Optional[Grade] = None
    backend: Optional[Annotated[Token, Field(max_length=20)]] = None
    # the GPU's state over the windows (NVML meters)
    sm_clock_mhz: Optional[_float(0.0, 1e5)] = None
    sm_clock_mhz_min: Optional[_float(0.0, 1e5)] = None
    mem_clock_mhz: Optional[_float(0.0, 1e5)] = None
    temperature_c: Optional[_float(-100.0, 300.0)] = None
    temperature_c_max: Optional[_float(-100.0, 300.0)] = None
    power_limits_seen_w: Optional[_list(Power, 64)] = None
    throttle_reasons: Optional[_list(Token, 32)] = None
    slowdown: Optional[bool] = None


class Comparison(Part):
    batch_size: Positive32
    rounds: Optional[Count32] = None
    energy_key: Optional[Token] = None
    latency_key: Optional[Token] = None
    energy_ratio: Optional[Ratio] = None
    energy_ratio_ci95: Optional[Interval] = None
    latency_ratio: Optional[Ratio] = None
    latency_ratio_ci95: Optional[Interval] = None
    verdict: Optional[Token] = None
    latency_verdict: Optional[Token] = None
    quality_grade: Optional[Grade] = None
    quality_reasons: Texts = []
    veto_reasons: Texts = []
    # how the verdict was reached (margins, alpha, the interval's method and figures)
    verdict_basis: Optional[ScalarMap] = None
    stopped_because: Optional[Token] = None


class Layer(Part):
    name: Text
    type: Name
    flops: Optional[Count] = None
    macs: Optional[Count] = None
    params: Optional[Count] = None
    share: Optional[Share] = None


class Evaluation(Part):
    metric: Optional[Annotated[Token, Field(max_length=40)]] = None
    value: Optional[MetricValue] = None
    labelled: Optional[bool] = None
    n_samples: Count32 = 0
    fidelity: FigureMap = {}
    fidelity_metric: Optional[Annotated[Token, Field(max_length=40)]] = None
    fidelity_value: Optional[MetricValue] = None
    fidelity_higher_is_better: Optional[bool] = None
    fidelity_kind: Optional[Annotated[Token, Field(max_length=20)]] = None
    higher_is_better: Optional[bool] = None
    metrics: FigureMap = {}
    task: Optional[Name] = None
    dataset: Optional[Name] = None
    notes: Texts = []


Level = Optional[Annotated[float, Field(gt=0.0, le=1e6, allow_inf_nan=False)]]


class ServingRequest(Part):
    """One request of a serving level's last pass (its share of the window's energy, its clock)."""

    index: Count32
    tokens_in_window: Count32 = 0
    fraction_in_window: Share = 0.0
    energy_j: Energy = 0.0
    prompt_tokens: Count32 = 0
    output_tokens: Count32 = 0
    ttft_ms: Optional[Ms] = None
    tpot_ms: Optional[Ms] = None
    e2e_ms: Optional[Ms] = None
    met_slo: Optional[bool] = None
    arrival_ms_from_window_start: Optional[Signed] = None
    end_ms_from_window_start: Optional[Signed] = None
    token_ms_from_arrival: _list(Ms, 4096) = []
    completed_in_window: Optional[bool] = None


class ServingLevel(Part):
    """A variant's figures at one load level (serving/figures.py names them; docs/ENGINE.md)."""

    concurrency: Optional[Positive32] = None
    request_rate: Level = None
    ttft_ms_p50: Optional[Ms] = None
    ttft_ms_p95: Optional[Ms] = None
    ttft_ms_p99: Optional[Ms] = None
    tpot_ms_p50: Optional[Ms] = None
    tpot_ms_p95: Optional[Ms] = None
    tpot_ms_p99: Optional[Ms] = None
    itl_ms_p50: Optional[Ms] = None
    itl_ms_p95: Optional[Ms] = None
    itl_ms_p99: Optional[Ms] = None
    e2e_ms_p50: Optional[Ms] = None
    e2e_ms_p95: Optional[Ms] = None
    e2e_ms_p99: Optional[Ms] = None
    requests_per_s: Optional[Rate] = None
    output_tokens_per_s: Optional[Rate] = None
    energy_j_per_output_token: Optional[Energy] = None
    energy_j_per_request: Optional[Energy] = None
    energy_attribution: Optional[Token] = None
    goodput_requests_per_s: Optional[Rate] = None
    energy_j_per_good_token: Optional[Energy] = None
    slo_ttft_ms: Optional[Ms] = None
    slo_tpot_ms: Optional[Ms] = None
    steady_window_s: Optional[Seconds] = None
    steady_requests: Optional[Count32] = None
    steady_good_requests: Optional[Count32] = None
    steady_output_tokens: Optional[Count32] = None
    steady_good_output_tokens: Optional[Count32] = None
    steady_request_equivalents: Optional[_float(0.0, INT32)] = None
    energy_j_window: Optional[Energy] = None
    active_energy_j_window: Optional[Energy] = None
    idle_power_w: Optional[Power] = None
    avg_power_w: Optional[Power] = None
    windows: Optional[Count32] = None
    rounds: Optional[Count32] = None
    round_energy_j_per_output_token: _list(Energy, 1024) = []
    round_latency_ms: _list(Ms, 1024) = []
    requests_total: Optional[Count32] = None
    ramp_requests: Optional[Count32] = None
    warmup_requests: Optional[Count32] = None
    energy_method: Optional[Token] = None
    energy_estimated: Optional[bool] = None
    energy_uncertainty_rel: Optional[Rel] = None
    attention: Optional[Token] = None
    backend: Optional[Token] = None
    backend_version: Optional[Token] = None
    scheduler: Optional[Token] = None
    decoding: Optional[Name] = None
    device: Optional[Token] = None
    flags: _list(Token, 32) = []
    quality_grade: Optional[Grade] = None
    quality_reasons: Texts = []
    requests: _list(ServingRequest, 1024) = []
    requests_window_energy_j: Optional[Energy] = None
    requests_detail_truncated: Optional[bool] = None


class ServingFailure(Part):
    """A load level a variant could not be served at, and why (its other levels stand)."""

    concurrency: Optional[Positive32] = None
    request_rate: Level = None
    error: Annotated[str, Field(max_length=2 * MAX_TEXT)] = ""


class ServingComparison(Comparison):
    """A variant against the baseline at one load level, in paired rounds."""

    batch_size: Optional[Positive32] = None
    concurrency: Optional[Positive32] = None
    request_rate: Level = None


class Variant(Part):
    recipe: Recipe
    recipe_params: ScalarMap = {}
    status: Literal["succeeded", "failed", "skipped"]
    error: Optional[Annotated[str, Field(max_length=8 * MAX_TEXT)]] = None
    params: Optional[Count] = None
    nonzero_params: Optional[Count] = None
    size_bytes: Optional[Count] = None
    flops: Optional[Count] = None
    macs: Optional[Count] = None
    layer_profile: Optional[_list(Layer, MAX_LAYERS)] = None
    measurements: _list(Measurement, MAX_MEASUREMENTS) = []
    sweep_measurements: Optional[_list(Measurement, MAX_MEASUREMENTS)] = None
    notes: Texts = []
    evaluation: Optional[Evaluation] = None
    comparison: Optional[_list(Comparison, MAX_MEASUREMENTS)] = None
    dtype: Optional[Annotated[Token, Field(max_length=20)]] = None
    stored_dtype: Optional[Annotated[Token, Field(max_length=20)]] = None
    baseline_dtype: Optional[Annotated[Token, Field(max_length=20)]] = None
    serving: Optional[_list(ServingLevel, 64)] = None
    serving_comparison: Optional[_list(ServingComparison, 64)] = None
    serving_failed: Optional[_list(ServingFailure, 64)] = None


class LengthStats(Part):
    min: Optional[_float(0.0, 1e7)] = None
    p10: Optional[_float(0.0, 1e7)] = None
    median: Optional[_float(0.0, 1e7)] = None
    p90: Optional[_float(0.0, 1e7)] = None
    max: Optional[_float(0.0, 1e7)] = None
    mean: Optional[_float(0.0, 1e7)] = None


class Workload(Part):
    source: Optional[Name] = None
    sha256: Optional[Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]] = None
    requests: Optional[Count32] = None
    prompt: Optional[LengthStats] = None
    max_new_tokens: Optional[LengthStats] = None
    prompt_tokens: Optional[LengthStats] = None
    tokenized_with: Optional[Name] = None
    lengths_note: Optional[Text] = None
    flops_per_request: Optional[Count] = None
    flops_per_output_token: Optional[Count] = None
    flops_method: Optional[Text] = None


class LoadLevel(Part):
    concurrency: Optional[Positive32] = None
    request_rate: Level = None


class Scenario(Part):
    kind: Literal["forward", "generation", "serving"] = "forward"
    prompt_tokens: Optional[Count32] = None
    new_tokens: Optional[Count32] = None
    backend: Optional[Literal["transformers", "vllm", "transformers-continuous-batching"]] = None
    prompt_source: Optional[Text] = None
    backend_version: Optional[Token] = None
    workload: Optional[Workload] = None
    load_levels: Optional[_list(LoadLevel, 16)] = None
    slo: Optional[Annotated[dict[Key, Optional[Ms]], Field(max_length=4)]] = None
    energy_attribution: Optional[Token] = None


class DriftRow(Part):
    batch_size: Positive32
    latency_ms_mean_first: Optional[Ms] = None
    latency_ms_mean_last: Optional[Ms] = None
    latency_ms_p50_first: Optional[Ms] = None
    latency_ms_p50_last: Optional[Ms] = None
    latency_rel_change: Optional[Signed] = None
    energy_j_per_inference_first: Optional[Energy] = None
    energy_j_per_inference_last: Optional[Energy] = None
    energy_rel_change: Optional[Signed] = None


class Drift(Part):
    recipe: Optional[Token] = None
    method: Optional[Name] = None
    max_abs_rel_change: Optional[_float(0.0, MAX_SIGNED)] = None
    per_batch_size: _list(DriftRow, MAX_MEASUREMENTS) = []


class ChildFingerprint(Part):
    """What only the child can know of the process that measured: its thread settings and the
    CUDA build of the torch it imported. The rest of the fingerprint is the worker's own."""

    threads: Optional[Count32] = None
    torch_threads: Optional[Count32] = None
    torch_threads_source: Optional[Name] = None
    onnxruntime_intra_op_threads: Optional[Count32] = None
    cuda_torch_version: Optional[Annotated[Token, Field(max_length=20)]] = None


class Sandbox(Part):
    mode: Literal["bwrap", "none"]
    detail: Text = ""


class Model(Part):
    """What the child loaded (the trade-off reads the task of older results)."""

    format: Optional[Annotated[Token, Field(max_length=30)]] = None
    architecture: Optional[Name] = None
    task: Optional[Annotated[Token, Field(max_length=40)]] = None
    detail: Optional[Text] = None


class RunTiming(Part):
    """Where the engine's wall time went (profile_result.run_timing)."""

    wall_s: Optional[Seconds] = None
    windows_s: Optional[Seconds] = None
    warmup_s: Optional[Seconds] = None
    warmup_calls: Optional[Count] = None
    windows_share: Optional[_float(0.0, 1.5)] = None
    windows_share_goal: Optional[Share] = None
    warmups_unstable: Texts = []


class Result(Part):
    """The audit-level parts; variants are checked one by one (one bad variant fails alone)."""

    schema_version: Annotated[int, Field(ge=1, le=SCHEMA_VERSION)] = 1
    engine_version: Annotated[Token, Field(max_length=20)] = ""
    model: Optional[Model] = None
    scenario: Optional[Scenario] = None
    fingerprint: ChildFingerprint = ChildFingerprint()
    variants: Annotated[list[Any], Field(max_length=MAX_VARIANTS)] = []
    drift: Optional[Drift] = None
    warnings: Texts = []
    sandbox: Optional[Sandbox] = None
    run_timing: Optional[RunTiming] = None


PairedVerdict = Literal["costs more", "costs less", "no measurable difference", "inconclusive"]


class ReferenceRow(Part):
    """One batch size of the paired comparison with the reference version: ratios new / reference."""

    batch_size: Positive32
    rounds: Optional[Count32] = None
    stopped_because: Optional[Name] = None
    energy_ratio: Optional[Ratio] = None
    energy_ratio_ci95: Optional[Interval] = None
    latency_ratio: Optional[Ratio] = None
    latency_ratio_ci95: Optional[Interval] = None
    verdict: Optional[PairedVerdict] = None
    latency_verdict: Optional[PairedVerdict] = None
    veto_reasons: Texts = []
    verdict_basis: Optional[ScalarMap] = None
    quality_grade: Optional[Grade] = None
    quality_reasons: Texts = []
    # the reference's own baseline in these rounds (latency_ms_mean, energy_j_per_inference ...)
    reference_measurement: Optional[ScalarMap] = None


class ReferenceFidelity(Part):
    metric: Optional[Annotated[Token, Field(max_length=40)]] = None
    value: Optional[MetricValue] = None  # a fidelity kind may have no headline figure
    higher_is_better: bool = True


class Reference(Part):
    """The result's "reference" section (issue 21): the audited version against the reference
    version, measured in the same interleaved rounds. Checked on its own: a malformed section is
    dropped with a warning and the audit's own measurements are stored (``check_reference``)."""

    label: Name
    status: Literal["compared", "refused", "failed"]
    reason: Optional[Text] = None
    basis: Optional[Literal["per inference", "per sample", "per output token"]] = None
    inputs: Optional[Text] = None
    per_batch_size: _list(ReferenceRow, MAX_MEASUREMENTS) = []
    fidelity: Optional[ReferenceFidelity] = None


class ResultRefused(Exception):
    """The result as a whole cannot be stored; the message says why, for the audit's error."""


def _where(loc: tuple, prefix: str = "") -> str:
    text = prefix
    for part in loc:
        part = part if isinstance(part, int) or len(part) <= 60 else f"{part[:40]}...({len(part)} characters)"
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _shown(value: Any) -> str:
    """The offending input, short: never a 20 MB string or a 100,000-entry list in a message."""
    if isinstance(value, str):
        return repr(value) if len(value) <= 60 else f"{value[:40]!r}... ({len(value)} characters)"
    if isinstance(value, (list, dict)):
        return f"a {type(value).__name__} of {len(value)} entries"
    return repr(value)[:80]


def describe(error: ValidationError, prefix: str = "") -> str:
    """The first problem, as a person reads it."""
    first = error.errors(include_url=False)[0]
    value = first.get("input")
    kind = "figure" if isinstance(value, (int, float)) and not isinstance(value, bool) else "value"
    return (f"the engine reported an invalid {kind}: {_where(tuple(first['loc']), prefix)} = {_shown(value)} "
            f"({first['msg']})")


_RECIPE = TypeAdapter(Recipe, config=ConfigDict(strict=True))


def _failed_variant(raw: Any, reason: str) -> dict:
    """A failed variant in the stored shape, under the recipe the child named when that is a
    plausible name."""
    recipe = raw.get("recipe") if isinstance(raw, dict) else None
    try:
        recipe = _RECIPE.validate_python(recipe)
    except ValidationError:
        recipe = "unknown"
    return Variant.model_construct(recipe=recipe, status="failed", error=reason).model_dump()


def check_variant(raw: Any, position: int) -> dict:
    """One variant as stored, or a failed variant that says which figure was refused."""
    try:
        return Variant.model_validate(raw).model_dump()
    except ValidationError as exc:
        return _failed_variant(raw, describe(exc, f"variants[{position}]"))


def check_reference(raw: Any) -> tuple[dict | None, str | None]:
    """The reference section as stored, or (None, the reason it was dropped). Absent: (None, None)."""
    if raw is None:
        return None, None
    try:
        return Reference.model_validate(raw).model_dump(), None
    except ValidationError as exc:
        return None, f"the comparison with the reference version was dropped: {describe(exc, 'reference')}"


def check_result(raw: Any) -> dict:
    """The child's document reduced to what the schema allows (see the module docstring)."""
    if not isinstance(raw, dict):
        raise ResultRefused("the engine's result is not an object")
    try:
        top = Result.model_validate(raw)
    except ValidationError as exc:
        raise ResultRefused(describe(exc)) from None
    doc = top.model_dump(exclude={"variants"})
    doc["variants"] = [check_variant(v, i) for i, v in enumerate(top.variants)]
    doc["reference"], dropped = check_reference(raw.get("reference"))
    if dropped:
        doc["warnings"].append(dropped[:MAX_TEXT])
    return doc


def check_size(doc: dict) -> None:
    """Refuse a document whose stored form would be over MAX_RESULT_BYTES."""
    size = len(json.dumps(doc, allow_nan=False, default=str))
    if size > MAX_RESULT_BYTES:
        raise ResultRefused(f"the engine's result is {size} bytes, over the limit of {MAX_RESULT_BYTES} bytes")


class Progress(Part):
    """A progress event; one that does not fit is ignored (it only feeds the progress bar)."""

    stage: Annotated[str, Field(max_length=60)] = ""
    percent: Optional[_float(0.0, 100.0)] = None
    message: Optional[Annotated[str, Field(max_length=MAX_PROGRESS_MESSAGE)]] = None
    variant: Optional[Count32] = None
    n_variants: Optional[Annotated[int, Field(ge=0, le=MAX_VARIANTS)]] = None
    batch_size: Optional[Count32] = None
    phase: Optional[Literal["forward", "prefill", "decode", "serving"]] = None
    round: Optional[Count32] = None
    n_rounds: Optional[Count32] = None
    eta_s: Optional[Seconds] = None


MAX_PROGRESS_MESSAGE = 300  # the audit's progress_message column


def check_progress(event: Any) -> dict | None:
    """The event's fields the progress bar reads, its message cut to the column's length; None
    for an event that does not fit."""
    if isinstance(event, dict) and isinstance(event.get("message"), str):
        event = {**event, "message": event["message"][:MAX_PROGRESS_MESSAGE]}
    try:
        return Progress.model_validate(event).model_dump()
    except ValidationError:
        return None
