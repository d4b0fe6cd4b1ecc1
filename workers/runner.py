"""Between a claimed audit and the engine's sandboxed child: builds the engine
request from the stored audit, relays progress and heartbeats back (rate-limited), and
accepts the child's result only through workers/result_schema.py and the worker's own facts."""
import time

from django.conf import settings

from audit.models import Audit
from audit.services import audits as audit_services
from workers import result_schema
from workers.engine import ENGINE_VERSION
from workers.engine import carbon as carbon_table
from workers.engine.fingerprint import host_fingerprint
from workers.engine.frontier import build_frontier
from workers.engine.supervise import run_engine
from workers.engine.tradeoff import audit_quality, build_tradeoff
from workers.power import sweep_or_run

ENGINE_OPTION_KEYS = (
    "threads", "warmup_iters", "window_s", "time_cap_s", "target_rel_ci", "idle_s",
    "grid_intensity_g_per_kwh", "pue", "carbon_source",
    # where the intensity came from (audit.services.audits.carbon_settings); profile.py copies
    # carbon_region/year/kind/licence/source_url into the result's carbon section
    "carbon_region", "carbon_year", "carbon_kind", "carbon_licence", "carbon_source_url", "carbon_warning",
    # the measurement method (timing.py, rounds.py) and the generation scenario (generation.py)
    "timing_mode", "rounds", "scenario", "prompt_tokens", "new_tokens", "generation_backend",
    # serving a workload at load levels (workers/engine/serving/stage.py)
    "load_levels", "serving_max_rounds",
    # the latency targets the trade-off judges against, and the GPU sweep (workers/power.py)
    "latency_target_ms_p95", "slo_ttft_ms_p95", "slo_tpot_ms_p95",
    # energy boundaries (workers/engine/meters/boundary.py) and the CPU estimate's identification
    "pue_known", "pue_source", "host_share", "cloud_instance_type",
    "power_limit_sweep", "power_limit_steps", "gpu_uuid",
    # the constraints of the recommendation and the SLO answer (workers/engine/constraints.py);
    # min_saving and equivalence_margin also decide the paired verdicts (rounds.py)
    "min_fidelity", "max_kl_divergence", "max_perplexity_increase_rel", "max_accuracy_drop",
    "max_metric_increase_rel", "min_saving", "equivalence_margin",
)


class AuditLost(Exception):
    """This attempt no longer owns the audit (cancelled, requeued, or taken over)."""


def _version_options(spec: dict) -> dict:
    """How the engine builds a version's module and inputs (bare weights, input overrides)."""
    return {
        "architecture": spec.get("architecture"),
        "architecture_config": spec.get("architecture_config") or {},
        "input_overrides": spec.get("input_overrides") or {},
    }


def reference_request(audit: Audit) -> dict | None:
    """The request's "reference" (docs/ENGINE_INTERFACE.md): the version measured against in the
    same rounds, loaded the way its own audits load it; None without one."""
    reference = audit.reference_version
    if reference is None:
        return None
    spec = reference.input_spec or {}
    return {
        "path": reference.file.path,
        "format": reference.format or "auto",
        "label": audit.options.get("reference_label") or reference.label,
        "seq_len": spec.get("seq_len"),
        "options": _version_options(spec),
    }


def build_engine_request(audit: Audit) -> dict:
    version = audit.model_version
    spec = version.input_spec or {}
    options = {key: audit.options[key] for key in ENGINE_OPTION_KEYS if key in audit.options}
    options.update(_version_options(spec))
    is_workload = audit.dataset is not None and audit.dataset.format == "workload"
    return {
        "command": "profile",
        "path": version.file.path,
        "format": version.format,
        "device": audit.device,
        "batch_sizes": audit.options.get("batch_sizes", [1]),
        "seq_len": spec.get("seq_len"),
        "recipes": audit.options.get("recipes", ["baseline"]),
        "dataset": audit.dataset.file.path if audit.dataset and not is_workload else None,
        # a dataset of kind workload is served, not evaluated on (workers/engine/serving/stage.py)
        "workload": audit.dataset.file.path if is_workload else None,
        "options": options,
        "reference": reference_request(audit),
    }


def stage_text(event: dict) -> str:
    """The engine's progress event as the audit's stage line (at most 60 characters), which
    audit/reports/progress.py reads back: "measuring · variant 2 of 5 · batch 8 · decode · round 1/3".
    The engine numbers variants from 0; people from 1."""
    parts = [event.get("stage") or ""]
    if event.get("n_variants") and event.get("stage") in ("counting-flops", "warm-up", "measuring", "evaluating"):
        n = int(event["n_variants"])
        parts.append(f"variant {min(int(event.get('variant') or 0) + 1, n)} of {n}")
    if event.get("batch_size"):
        parts.append(f"batch {int(event['batch_size'])}")
    if event.get("phase") in ("prefill", "decode", "serving"):
        parts.append(event["phase"])
    if event.get("round") and event.get("n_rounds"):
        parts.append(f"round {int(event['round'])}/{int(event['n_rounds'])}")
    text = " · ".join(parts)
    while len(text) > 60 and len(parts) > 1:  # the round goes first, then the phase ...
        parts.pop()
        text = " · ".join(parts)
    return text[:60]


# Progress reaches the database through a token bucket: a child (or a model that took it over)
# may send thousands of events a second, and each would be an UPDATE of the audit's row.
PROGRESS_WRITES_PER_S = 2.0
PROGRESS_BURST = 10  # a few quick stage changes at the start still show at once
PROGRESS_FLUSH_S = 0.5  # how often a held-back event is looked at again while the child is silent


class ProgressGate:
    """Which progress updates are written now. Updates that arrive with no write left are
    merged (latest stage and message, highest percentage) and written by the next event or
    tick that finds a write available, so the last state always lands."""

    def __init__(self, *, rate_per_s: float = PROGRESS_WRITES_PER_S, burst: int = PROGRESS_BURST, clock=time.monotonic):
        self.rate, self.burst, self.clock = rate_per_s, float(burst), clock
        self.tokens = self.burst
        self.refilled_at = clock()
        self.pending: dict | None = None

    def offer(self, fields: dict) -> dict | None:
        """Hold ``fields``; the fields to write now, or None."""
        merged = dict(self.pending or {})
        for key, value in fields.items():
            if value is None:
                continue
            merged[key] = max(value, merged.get(key, value)) if key == "percent" else value
        self.pending = merged
        return self.take()

    def take(self) -> dict | None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.refilled_at) * self.rate)
        self.refilled_at = now
        if self.pending is None or self.tokens < 1:
            return None
        self.tokens -= 1
        due, self.pending = self.pending, None
        return due

    def drain(self) -> dict | None:
        """Whatever is held, regardless of the rate: the run is over."""
        due, self.pending = self.pending, None
        return due


def _progress_fields(event: dict, step: list) -> dict:
    percent = event.get("percent")
    if percent is not None:
        percent = (step[0] + percent / 100.0) / step[1] * 100.0
    fields = {"stage": stage_text(event), "percent": percent, "message": event.get("message") or None}
    if event.get("eta_s") is not None and step[1] == 1:  # a sweep's later steps are not in the engine's plan
        fields["eta_s"] = event["eta_s"]
    return fields


def run_engine_for_audit(*, audit_id: int, attempt: int, request: dict) -> dict:
    """Run the engine; progress and ticks are heartbeats, and a lost claim stops the child.
    Each child's result is checked against the schema before anything else reads it."""

    step = [0, 1]  # this engine run's place in a power-limit sweep (one run: 0 of 1)
    gate = ProgressGate()
    last_write = [time.monotonic()]

    def write(fields: dict) -> bool:
        last_write[0] = time.monotonic()
        return audit_services.audit_progress(audit_id=audit_id, attempt=attempt, **fields)

    def on_event(event: dict) -> None:
        if event.get("event") != "progress":
            return
        checked = result_schema.check_progress(event)
        if checked is None:  # a malformed event only feeds the progress bar: skip it
            return
        due = gate.offer(_progress_fields(checked, step))
        if due is not None and not write(due):
            raise AuditLost()

    def on_tick() -> None:
        due = gate.take()
        if due is None and time.monotonic() - last_write[0] < settings.AUDIT_HEARTBEAT_S:
            return
        if not write(due or {}):
            raise AuditLost()

    def run_once(one_request: dict) -> dict:
        step[:] = one_request.get("sweep_step") or [0, 1]
        lost = False
        try:
            raw = run_engine(
                one_request,
                timeout_s=settings.ENGINE_TIMEOUT_S,
                on_event=on_event,
                tick_s=min(settings.AUDIT_HEARTBEAT_S, PROGRESS_FLUSH_S),
                on_tick=on_tick,
            )
        except AuditLost:
            lost = True
            raise
        finally:
            held = None if lost else gate.drain()
            if held is not None:
                lost = not write(held)
        if lost:
            raise AuditLost()
        return result_schema.check_result(raw)

    # One run, or (asked for, on a GPU worker that allows it) one run per power-limit step,
    # with the card's limit restored afterwards whatever happens (workers/power.py).
    return sweep_or_run(request, run_once)


def carbon_basis(options: dict) -> dict:
    """The result's carbon section from the audit's own options (audit.services.audits
    carbon_settings put them there), never from the child."""
    if options.get("grid_intensity_g_per_kwh") is None:
        options = {**carbon_table.lookup("WORLD"), **{k: v for k, v in options.items() if v is not None}}
    basis = {
        "intensity_g_per_kwh": float(options["grid_intensity_g_per_kwh"]),
        "pue": float(options.get("pue") or 1.0),
        "source": str(options.get("carbon_source") or "request"),
        # whether the PUE was set (team or site); without one the grams rest on the host boundary
        "pue_known": bool(options.get("pue_known", float(options.get("pue") or 1.0) != 1.0)),
    }
    for key in ("region", "year", "kind", "licence", "source_url"):
        if options.get(f"carbon_{key}") is not None:
            basis[key] = options[f"carbon_{key}"]
    return basis


def _summaries(doc: dict, options: dict) -> None:
    """The trade-off, frontier and grade, derived again from the checked variants with the
    audit's options: pure functions of what was measured, so the child's copies are not read.
    In this order: the grade reads the trade-off's recommendation."""
    builders = (("tradeoff", lambda: build_tradeoff(doc, options)), ("frontier", lambda: build_frontier(doc, options)),
                ("quality", lambda: audit_quality(doc)))
    for key, build in builders:
        try:
            doc[key] = build()
        except Exception as exc:  # noqa: BLE001 - the measurements stand on their own
            doc[key] = None
            doc["warnings"].append(f"the {key} section could not be built: {type(exc).__name__}: {exc}")


def accept_result(result: dict, request: dict) -> dict:
    """The document to store: the checked result (run_once), with what the worker knows better
    than the child set by the worker (module docstring of workers/result_schema.py), and
    refused (ResultRefused) when it would be over the size limit."""
    options = request.get("options") or {}
    device = str(request.get("device") or "cpu")
    doc = dict(result)
    doc["warnings"] = list(doc.get("warnings") or [])
    child_fp = {k: v for k, v in (doc.get("fingerprint") or {}).items() if v is not None}
    doc["fingerprint"] = {**host_fingerprint(device), **child_fp}
    doc["carbon"] = carbon_basis(options)
    doc["engine_version"] = ENGINE_VERSION  # the child runs this worker's engine code
    for variant in doc.get("variants") or []:
        for m in (variant.get("measurements") or []) + (variant.get("sweep_measurements") or []):
            if isinstance(m.get("energy_j_per_inference"), float | int):
                m["co2e_g_per_inference"], m["co2e_boundary"] = carbon_table.boundary_co2e(
                    m, doc["carbon"]["intensity_g_per_kwh"], doc["carbon"]["pue"], doc["carbon"]["pue_known"])
    if (doc.get("scenario") or {}).get("kind") == "serving":  # the audit's targets, not the child's say
        doc["scenario"]["slo"] = {"ttft_ms": options.get("slo_ttft_ms_p95"), "tpot_ms": options.get("slo_tpot_ms_p95")}
    _summaries(doc, options)
    result_schema.check_size(doc)
    return doc
