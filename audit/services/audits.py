"""The audit lifecycle, driven by the task: queued -> running -> succeeded | failed | cancelled.

Every write made on behalf of a running task is conditional on the attempt that
claimed the audit, so a worker that lost its claim (the reaper requeued it,
someone cancelled it, another worker took the redelivered task) cannot overwrite
the state; its writes match no row and it stops."""
import json
import logging
import math
import re
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from workers.engine import carbon

from ..models import Audit, Dataset, ModelVersion, Variant

from .budgets import audit_budgets_check
from .options import clean_engine_options
from .dataset_fit import check_dataset_fits
from .redact import hide_storage_paths, hide_storage_paths_in
from .serving import check_serving
from .release import APPROVED, resolve_reference
from .results import apply_result_fields, check_storable, store_variants, with_checked_reference

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZES = [1, 8]
DEFAULT_RECIPES = ["baseline"]
MAX_BATCH_SIZE = 4096


RUN_AUDIT_TASK = "workers.tasks.run_audit"


def _dispatch(audit_id: int, queue: str) -> None:
    # By name through the project's app: services do not import the tasks that import them.
    from workers.celery import app  # the Celery app needs Django set up first

    app.send_task(RUN_AUDIT_TASK, args=[audit_id], queue=queue)
    Audit.objects.filter(pk=audit_id, status=Audit.Status.QUEUED).update(dispatched_at=timezone.now())


def _dispatch_on_commit(audit_id: int, queue: str) -> None:
    """Send the task once the row is committed. A broker that is down does not lose the
    request: the audit stays queued and the reaper sends it again."""
    transaction.on_commit(lambda: _dispatch(audit_id, queue), robust=True)


HARDWARE_QUEUE = re.compile(r"^(cpu|gpu)[\w.-]{0,50}$")


def check_target_queue(queue: str) -> None:
    """Audits go to hardware queues only (cpu, gpu, gpu-h100, ...), never to maintenance."""
    if not HARDWARE_QUEUE.match(queue or ""):
        raise ValidationError(
            f"“{queue}” is not a hardware queue: use cpu, gpu or a name starting with one of them (e.g. gpu-h100)."
        )


def _electricitymaps_latest(zone: str) -> dict:
    """Options from Electricity Maps' latest carbon intensity of ``zone``; raises on any failure."""
    url = (f"{settings.ELECTRICITYMAPS_API_URL.rstrip('/')}/carbon-intensity/latest?"
           + urllib.parse.urlencode({"zone": zone}))
    req = urllib.request.Request(url, headers={"auth-token": settings.ELECTRICITYMAPS_API_KEY})
    with urllib.request.urlopen(req, timeout=settings.ELECTRICITYMAPS_TIMEOUT_S) as resp:  # noqa: S310 - fixed https base
        body = json.loads(resp.read().decode("utf-8"))
    intensity = float(body["carbonIntensity"])
    if not math.isfinite(intensity) or intensity < 0:
        raise ValueError(f"implausible carbonIntensity {body['carbonIntensity']!r}")
    when = str(body.get("datetime") or "")
    return {
        "grid_intensity_g_per_kwh": intensity,
        "carbon_source": f"Electricity Maps, latest for {zone}" + (f" at {when}" if when else ""),
        "carbon_region": zone,
        "carbon_year": int(when[:4]) if when[:4].isdigit() else None,
        # Electricity Maps' carbon-intensity endpoint gives the average intensity of consumption.
        "carbon_kind": "average",
        "carbon_licence": "Electricity Maps API terms",
        "carbon_source_url": url,
    }


def _region_carbon(region: str) -> dict:
    """The live figure for a country zone where Electricity Maps is configured, else the table."""
    code = carbon.normalise(region)
    if code not in carbon.table():
        raise ValidationError(f"“{region}” is not a grid region of the shipped table (e.g. DE, FR, US, EU, WORLD).")
    if settings.ELECTRICITYMAPS_API_KEY and code not in ("WORLD", "EU"):
        try:
            return _electricitymaps_latest(code)
        except Exception as exc:  # noqa: BLE001 - any failure of the provider: the table instead
            log.warning("Electricity Maps failed for %s: %s; using the shipped table", code, exc)
            return {**carbon.lookup(code),
                    "carbon_warning": f"Electricity Maps unavailable ({type(exc).__name__}: {exc}); "
                                      f"used the shipped yearly average for {code}"}
    return carbon.lookup(code)


def carbon_settings(team, grid_region: str | None = None) -> dict:
    """The grid intensity and PUE an audit of this team uses, with where they came from.

    Precedence: the audit's own ``grid_region``; the team's explicit intensity; the team's
    region; settings.DEFAULT_GRID_REGION; DEFAULT_GRID_INTENSITY_G_PER_KWH. A region is
    looked up live (Electricity Maps, when ELECTRICITYMAPS_API_KEY is set) or in the shipped
    table; the source, year, kind, licence and region travel with the audit's options.
    """
    pue = team.pue if team.pue is not None else settings.DEFAULT_PUE
    # Whether a PUE was set (team, or a site default other than 1.0): the grams of CO2e then rest on
    # the facility boundary (host x PUE), else on the host (workers/engine/meters/boundary.py).
    pue_opts = {"pue": pue, "pue_known": team.pue is not None or settings.DEFAULT_PUE != 1.0,
                "pue_source": (f"team setting ({team.name})" if team.pue is not None else
                               f"site default DEFAULT_PUE={settings.DEFAULT_PUE:g}")}
    if grid_region:
        return {**_region_carbon(grid_region), **pue_opts}
    if team.grid_intensity_g_per_kwh is not None:
        return {
            "grid_intensity_g_per_kwh": team.grid_intensity_g_per_kwh,
            **pue_opts,
            "carbon_source": team.carbon_source or f"team setting ({team.name})",
            "carbon_region": carbon.normalise(team.grid_region) or None,
        }
    region = team.grid_region or settings.DEFAULT_GRID_REGION
    if region:
        return {**_region_carbon(region), **pue_opts}
    return {
        "grid_intensity_g_per_kwh": settings.DEFAULT_GRID_INTENSITY_G_PER_KWH,
        **pue_opts,
        "carbon_source": settings.DEFAULT_CARBON_SOURCE,
    }


@transaction.atomic
def audit_request(
    *,
    user,
    model_version: ModelVersion,
    dataset: Dataset | None = None,
    target_queue: str = "cpu",
    device: str = "cpu",
    batch_sizes: list[int] | None = None,
    recipes: list[str] | None = None,
    engine_options: dict | None = None,
    grid_region: str | None = None,
    measurement: dict | None = None,
    reference_version=APPROVED,
) -> Audit:
    """Create an audit and dispatch it to its hardware queue once the row is committed.

    ``measurement``: the user's measurement options (scenario, token lengths, latency targets,
    timing mode, rounds, power-limit sweep; services/options.py), checked here.
    ``reference_version``: the version measured against in the same rounds (services/release.py):
    APPROVED (default: the model's approved version, if any), None, or a version of the team."""
    check_target_queue(target_queue)
    reference, label = resolve_reference(model_version, reference_version)
    measurement = clean_engine_options(measurement or {})
    batch_sizes = sorted(set(batch_sizes or DEFAULT_BATCH_SIZES))
    if any(b < 1 or b > MAX_BATCH_SIZE for b in batch_sizes):
        raise ValidationError(f"Batch sizes must be between 1 and {MAX_BATCH_SIZE}.")
    if dataset is not None and dataset.team_id != model_version.asset.team_id:
        raise ValidationError("The dataset belongs to another team.")
    check_serving(model_version, dataset, measurement)
    check_dataset_fits(model_version, dataset)  # the form offers only those; the API is told why
    options = {
        "batch_sizes": batch_sizes,
        "recipes": list(dict.fromkeys(recipes or DEFAULT_RECIPES)),
        "window_s": settings.ENGINE_GPU_WINDOW_S if device.startswith("cuda") else settings.ENGINE_WINDOW_S,
        "time_cap_s": settings.ENGINE_GPU_TIME_CAP_S if device.startswith("cuda") else settings.ENGINE_TIME_CAP_S,
        "idle_s": settings.ENGINE_IDLE_S,
        **carbon_settings(model_version.asset.team, grid_region),
        **(engine_options or {}),
        **measurement,
    }
    if reference is not None:
        options["reference_label"] = label  # the report's "v7 vs v6 (approved)", as it was when asked
    audit = Audit.objects.create(
        model_version=model_version,
        dataset=dataset,
        target_queue=target_queue,
        device=device,
        options=options,
        requested_by=user,
        stage="waiting for a worker",
        reference_version=reference,
    )
    _dispatch_on_commit(audit.pk, target_queue)
    return audit


@dataclass
class Claim:
    """What a task found when it tried to take an audit."""

    outcome: str  # claimed | finished | busy | exhausted | missing
    attempt: int = 0
    audit: Audit | None = None


def _stale_before(now):
    return now - timedelta(seconds=settings.AUDIT_STALE_AFTER_S)


def audit_claim(*, audit_id: int, hostname: str) -> Claim:
    """Take an audit for this worker with one conditional UPDATE.

    Claimable: queued, or running with a stale heartbeat (its worker died and the
    broker redelivered the task). A finished audit is left alone; a running one
    with a fresh heartbeat belongs to a live worker."""
    now = timezone.now()
    claimable = Q(status=Audit.Status.QUEUED) | Q(status=Audit.Status.RUNNING, heartbeat_at__lt=_stale_before(now))
    with transaction.atomic():
        updated = (
            Audit.objects.filter(pk=audit_id)
            .filter(claimable)
            .filter(attempts__lt=settings.AUDIT_MAX_ATTEMPTS)
            .update(
                status=Audit.Status.RUNNING,
                attempts=F("attempts") + 1,
                heartbeat_at=now,
                started_at=now,
                worker_hostname=hostname[:200],
                stage="starting",
                progress=0.0,
                progress_message="",
                measuring_ends_at=None,
                error="",
            )
        )
        audit = Audit.objects.filter(pk=audit_id).select_related("model_version", "model_version__asset", "dataset").first()
    if audit is None:
        return Claim("missing")
    if updated:
        return Claim("claimed", attempt=audit.attempts, audit=audit)
    if audit.is_finished:
        return Claim("finished", audit=audit)
    if audit.attempts >= settings.AUDIT_MAX_ATTEMPTS and (
        audit.status == Audit.Status.QUEUED or (audit.heartbeat_at and audit.heartbeat_at < _stale_before(now))
    ):
        _fail_exhausted(audit)
        return Claim("exhausted", audit=audit)
    return Claim("busy", audit=audit)


def _fail_exhausted(audit: Audit) -> None:
    now = timezone.now()
    Audit.objects.filter(pk=audit.pk, attempts=audit.attempts).filter(
        Q(status=Audit.Status.QUEUED) | Q(status=Audit.Status.RUNNING, heartbeat_at__lt=_stale_before(now))
    ).update(
        status=Audit.Status.FAILED,
        finished_at=timezone.now(),
        error=(
            f"Gave up after {audit.attempts} attempts: the worker running this audit stopped "
            f"(last heartbeat {audit.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC on {audit.worker_hostname or 'an unknown host'})."
            if audit.heartbeat_at
            else f"Gave up after {audit.attempts} attempts."
        ),
    )


def _running(audit_id: int, attempt: int):
    return Audit.objects.filter(pk=audit_id, attempts=attempt, status=Audit.Status.RUNNING)


def audit_progress(*, audit_id: int, attempt: int, stage: str | None = None, percent: float | None = None,
                   message: str | None = None, eta_s: float | None = None) -> bool:
    """Record progress and a heartbeat. False when this attempt no longer owns the audit
    (cancelled, requeued or taken over): the caller must stop.

    The percentage never goes down within an attempt (a claim starts it at 0): a power-limit
    sweep runs the engine several times, each from 0, and the page must not jump back."""
    fields = {"heartbeat_at": timezone.now()}
    if stage is not None:
        fields["stage"] = hide_storage_paths(stage)[:60]
    if message is not None:
        fields["progress_message"] = hide_storage_paths(message)[:300]
    if eta_s is not None:  # the engine's estimate of the measuring left, as a time the page counts down to
        fields["measuring_ends_at"] = fields["heartbeat_at"] + timedelta(seconds=max(0.0, float(eta_s)))
    if percent is not None:
        fields["progress"] = Greatest(F("progress"), Value(max(0.0, min(100.0, float(percent)))))
    return _running(audit_id, attempt).update(**fields) == 1


def audit_fail(*, audit_id: int, attempt: int, error: str) -> bool:
    return (
        _running(audit_id, attempt).update(
            status=Audit.Status.FAILED, error=hide_storage_paths(error)[:5000], finished_at=timezone.now(), stage="failed"
        )
        == 1
    )


def audit_requeue(*, audit_id: int, attempt: int, reason: str, stale_before=None) -> bool:
    """Give the audit back to the queue (a transient failure); it is dispatched again.
    With `stale_before`, only while its heartbeat is still older than that (the reaper's
    check, repeated in the UPDATE so a heartbeat written meanwhile wins)."""
    running = _running(audit_id, attempt)
    if stale_before is not None:
        running = running.filter(heartbeat_at__lt=stale_before)
    with transaction.atomic():
        updated = running.update(status=Audit.Status.QUEUED, stage=f"requeued: {hide_storage_paths(reason)}"[:60])
        if updated:
            audit = Audit.objects.get(pk=audit_id)
            _dispatch_on_commit(audit.pk, audit.target_queue)
    return updated == 1


def audit_cancel(*, audit: Audit) -> bool:
    """Cancel a queued or running audit; a running worker notices at its next heartbeat."""
    return (
        Audit.objects.filter(pk=audit.pk, status__in=[Audit.Status.QUEUED, Audit.Status.RUNNING]).update(
            status=Audit.Status.CANCELLED, finished_at=timezone.now(), stage="cancelled"
        )
        == 1
    )


def audit_store_result(*, audit_id: int, attempt: int, result: dict) -> bool:
    """Store the engine's result document: variants, measurements, evaluations, fingerprint.

    An audit succeeds when at least one variant succeeded; failed and skipped
    variants are kept with their reasons."""
    result = hide_storage_paths_in(with_checked_reference(result))  # pages name uploads, not server paths
    check_storable(result)
    with transaction.atomic():
        audit = _running(audit_id, attempt).select_for_update().first()
        if audit is None:
            return False
        store_variants(audit, result)  # a previous attempt may have died mid-write; it starts clean
        succeeded = audit.variants.filter(status=Variant.Status.SUCCEEDED).exists()
        apply_result_fields(audit, result)
        audit.finished_at = timezone.now()
        audit.heartbeat_at = audit.finished_at
        audit.progress = 100.0
        if succeeded:
            audit.status = Audit.Status.SUCCEEDED
            audit.stage = "done"
            audit.review_status = Audit.ReviewStatus.PENDING
        else:
            audit.status = Audit.Status.FAILED
            audit.stage = "failed"
            reasons = "; ".join(f"{v.get('recipe')}: {v.get('error') or v.get('status')}" for v in result.get("variants", []))
            audit.error = f"No variant could be measured. {reasons}"[:5000]
        audit.save()
        if succeeded:
            audit_budgets_check(audit=audit)
    return True


def audits_reap_stale(*, now=None) -> dict:
    """Audits whose worker stopped sending heartbeats: requeue while attempts remain,
    otherwise fail them with the reason. Returns counts for the log."""
    now = now or timezone.now()
    stale = Audit.objects.filter(status=Audit.Status.RUNNING, heartbeat_at__lt=_stale_before(now))
    requeued = failed = 0
    for audit in stale:
        if audit.attempts < settings.AUDIT_MAX_ATTEMPTS:
            if audit_requeue(audit_id=audit.pk, attempt=audit.attempts, reason="worker stopped responding",
                             stale_before=_stale_before(now)):
                requeued += 1
        else:
            _fail_exhausted(audit)
            failed += 1
    return {"requeued": requeued, "failed": failed, "resent": audits_resend_lost(now=now)}


def audits_resend_lost(*, now=None) -> int:
    """Queued audits whose message may be lost (never sent, or sent long ago and still not
    claimed): send them again. Harmless if the first message is still there: the claim lets
    one task run the audit and the other finds it taken."""
    now = now or timezone.now()
    before = now - timedelta(seconds=settings.AUDIT_RESEND_QUEUED_AFTER_S)
    lost = Audit.objects.filter(status=Audit.Status.QUEUED, created_at__lt=before).filter(
        Q(dispatched_at__isnull=True) | Q(dispatched_at__lt=before)
    )
    resent = 0
    for audit in lost.only("pk", "target_queue"):
        try:
            _dispatch(audit.pk, audit.target_queue)
        except Exception:  # the broker is still away; the next round tries again
            log.warning("could not resend audit %s", audit.pk, exc_info=True)
            break
        resent += 1
    return resent
