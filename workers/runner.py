"""Between a claimed audit and the engine's sandboxed child: builds the engine
request from the stored audit and relays progress and heartbeats back."""
from django.conf import settings

from audit.models import Audit
from audit.services import audits as audit_services
from workers.engine.sandbox import run_engine
from workers.power import sweep_or_run

ENGINE_OPTION_KEYS = (
    "threads", "warmup_iters", "window_s", "time_cap_s", "target_rel_ci", "idle_s",
    "grid_intensity_g_per_kwh", "pue", "carbon_source",
    # where the intensity came from (audit.services.audits.carbon_settings); profile.py copies
    # carbon_region/year/kind/licence/source_url into the result's carbon section
    "carbon_region", "carbon_year", "carbon_kind", "carbon_licence", "carbon_source_url", "carbon_warning",
    # the measurement method (timing.py, rounds.py) and the generation scenario (generation.py)
    "timing_mode", "rounds", "scenario", "prompt_tokens", "new_tokens", "generation_backend",
    # the latency targets the trade-off judges against, and the GPU sweep (workers/power.py)
    "latency_target_ms_p95", "slo_ttft_ms_p95", "slo_tpot_ms_p95",
    "power_limit_sweep", "power_limit_steps", "gpu_uuid",
    # the constraints of the recommendation and the SLO answer (workers/engine/constraints.py);
    # min_saving and equivalence_margin also decide the paired verdicts (rounds.py)
    "min_fidelity", "max_kl_divergence", "max_perplexity_increase_rel", "max_accuracy_drop",
    "max_metric_increase_rel", "min_saving", "equivalence_margin",
)


class AuditLost(Exception):
    """This attempt no longer owns the audit (cancelled, requeued, or taken over)."""


def build_engine_request(audit: Audit) -> dict:
    version = audit.model_version
    spec = version.input_spec or {}
    options = {key: audit.options[key] for key in ENGINE_OPTION_KEYS if key in audit.options}
    options.update(
        architecture=spec.get("architecture"),
        architecture_config=spec.get("architecture_config") or {},
        input_overrides=spec.get("input_overrides") or {},
    )
    return {
        "command": "profile",
        "path": version.file.path,
        "format": version.format,
        "device": audit.device,
        "batch_sizes": audit.options.get("batch_sizes", [1]),
        "seq_len": spec.get("seq_len"),
        "recipes": audit.options.get("recipes", ["baseline"]),
        "dataset": audit.dataset.file.path if audit.dataset else None,
        "options": options,
    }


def stage_text(event: dict) -> str:
    """The engine's progress event as the audit's stage line (at most 60 characters), which
    audit/reports/progress.py reads back: "measuring · variant 2 of 5 · batch 8 · decode · round 1/3".
    The engine numbers variants from 0; people from 1."""
    parts = [event.get("stage") or ""]
    if event.get("n_variants") and event.get("stage") in ("counting-flops", "measuring", "evaluating"):
        n = int(event["n_variants"])
        parts.append(f"variant {min(int(event.get('variant') or 0) + 1, n)} of {n}")
    if event.get("batch_size"):
        parts.append(f"batch {int(event['batch_size'])}")
    if event.get("phase") in ("prefill", "decode"):
        parts.append(event["phase"])
    if event.get("round") and event.get("n_rounds"):
        parts.append(f"round {int(event['round'])}/{int(event['n_rounds'])}")
    text = " · ".join(parts)
    while len(text) > 60 and len(parts) > 1:  # the round goes first, then the phase ...
        parts.pop()
        text = " · ".join(parts)
    return text[:60]


def run_engine_for_audit(*, audit_id: int, attempt: int, request: dict) -> dict:
    """Run the engine; every event and tick is a heartbeat, and a lost claim stops the child."""

    step = [0, 1]  # this engine run's place in a power-limit sweep (one run: 0 of 1)

    def on_event(event: dict) -> None:
        if event.get("event") != "progress":
            return
        stage = stage_text(event)
        percent = event.get("percent")
        if percent is not None:
            percent = (step[0] + float(percent) / 100.0) / step[1] * 100.0
        if not audit_services.audit_progress(
            audit_id=audit_id, attempt=attempt, stage=stage, percent=percent,
            message=str(event.get("message") or "") or None,
        ):
            raise AuditLost()

    def on_tick() -> None:
        if not audit_services.audit_progress(audit_id=audit_id, attempt=attempt):
            raise AuditLost()

    def run_once(one_request: dict) -> dict:
        step[:] = one_request.get("sweep_step") or [0, 1]
        return run_engine(
            one_request,
            timeout_s=settings.ENGINE_TIMEOUT_S,
            on_event=on_event,
            tick_s=settings.AUDIT_HEARTBEAT_S,
            on_tick=on_tick,
        )

    # One run, or (asked for, on a GPU worker that allows it) one run per power-limit step,
    # with the card's limit restored afterwards whatever happens (workers/power.py).
    return sweep_or_run(request, run_once)
