"""The audit state machine as the task drives it: claims, heartbeats, results, the reaper."""
from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import Audit, Measurement, Variant
from audit.services import audits as services

from .factories import make_audit, measurement_doc, result_doc

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_dispatch(monkeypatch):
    """Record dispatches instead of sending them: these tests are about the database state."""
    sent = []
    monkeypatch.setattr(services, "_dispatch", lambda audit_id, queue: sent.append((audit_id, queue)))
    return sent


def test_request_dispatches_after_commit_with_options(member, team, django_capture_on_commit_callbacks, no_dispatch):
    from .factories import make_version

    version = make_version(team)
    with django_capture_on_commit_callbacks(execute=True):
        audit = services.audit_request(user=member, model_version=version, batch_sizes=[8, 1, 8], target_queue="cpu")
    assert no_dispatch == [(audit.pk, "cpu")]
    assert audit.options["batch_sizes"] == [1, 8]
    assert audit.options["grid_intensity_g_per_kwh"] == 481.0  # the shipped table's WORLD row (Ember 2023)
    assert audit.options["carbon_region"] == "WORLD"
    assert audit.status == Audit.Status.QUEUED


def test_claim_takes_a_queued_audit_once(team):
    audit = make_audit(team)
    first = services.audit_claim(audit_id=audit.pk, hostname="w1")
    second = services.audit_claim(audit_id=audit.pk, hostname="w2")
    assert (first.outcome, first.attempt) == ("claimed", 1)
    assert second.outcome == "busy"
    audit.refresh_from_db()
    assert (audit.status, audit.worker_hostname, audit.attempts) == ("running", "w1", 1)


def test_redelivered_task_for_finished_audit_does_nothing(team):
    audit = make_audit(team, status=Audit.Status.SUCCEEDED, attempts=1)
    claim = services.audit_claim(audit_id=audit.pk, hostname="w2")
    assert claim.outcome == "finished"
    audit.refresh_from_db()
    assert (audit.status, audit.attempts) == ("succeeded", 1)


def test_stale_running_audit_is_reclaimed_with_next_attempt(team, settings):
    stale = timezone.now() - timedelta(seconds=settings.AUDIT_STALE_AFTER_S + 5)
    audit = make_audit(team, status=Audit.Status.RUNNING, attempts=1, heartbeat_at=stale, worker_hostname="dead")
    claim = services.audit_claim(audit_id=audit.pk, hostname="w2")
    assert (claim.outcome, claim.attempt) == ("claimed", 2)
    # the dead worker's attempt can no longer write
    assert services.audit_progress(audit_id=audit.pk, attempt=1, stage="zombie") is False
    assert services.audit_progress(audit_id=audit.pk, attempt=2, stage="measuring", percent=40) is True
    audit.refresh_from_db()
    assert (audit.stage, audit.progress) == ("measuring", 40.0)


def test_claim_after_last_attempt_fails_with_reason(team, settings):
    stale = timezone.now() - timedelta(seconds=settings.AUDIT_STALE_AFTER_S + 5)
    audit = make_audit(
        team, status=Audit.Status.RUNNING, attempts=settings.AUDIT_MAX_ATTEMPTS, heartbeat_at=stale, worker_hostname="w9"
    )
    claim = services.audit_claim(audit_id=audit.pk, hostname="w2")
    assert claim.outcome == "exhausted"
    audit.refresh_from_db()
    assert audit.status == "failed"
    assert f"after {settings.AUDIT_MAX_ATTEMPTS} attempts" in audit.error and "w9" in audit.error


def test_reaper_requeues_then_fails(team, settings, no_dispatch, django_capture_on_commit_callbacks):
    stale = timezone.now() - timedelta(seconds=settings.AUDIT_STALE_AFTER_S + 5)
    fresh = make_audit(team, status=Audit.Status.RUNNING, attempts=1, heartbeat_at=timezone.now())
    retry = make_audit(team, status=Audit.Status.RUNNING, attempts=1, heartbeat_at=stale)
    give_up = make_audit(team, status=Audit.Status.RUNNING, attempts=settings.AUDIT_MAX_ATTEMPTS, heartbeat_at=stale)
    with django_capture_on_commit_callbacks(execute=True):
        counts = services.audits_reap_stale()
    assert counts == {"requeued": 1, "failed": 1, "resent": 0}
    statuses = dict(Audit.objects.values_list("pk", "status"))
    assert statuses == {fresh.pk: "running", retry.pk: "queued", give_up.pk: "failed"}
    assert no_dispatch == [(retry.pk, "cpu")]
    assert "stopped" in Audit.objects.get(pk=give_up.pk).error


def test_store_result_writes_variants_and_measurements(team):
    audit = make_audit(team)
    claim = services.audit_claim(audit_id=audit.pk, hostname="w1")
    assert services.audit_store_result(audit_id=audit.pk, attempt=claim.attempt, result=result_doc())
    audit.refresh_from_db()
    assert audit.status == "succeeded" and audit.progress == 100.0
    assert audit.review_status == Audit.ReviewStatus.PENDING
    assert audit.fingerprint["cpu"]["model"] == "Test CPU"
    variant = Variant.objects.get(audit=audit)
    assert (variant.flops, variant.macs) == (4672, 2336)
    rows = list(Measurement.objects.filter(variant=variant).values_list("batch_size", "latency_p50_ms", "energy_method"))
    assert rows == [(1, 0.2, "estimate-tdp"), (8, 0.2, "estimate-tdp")]


def test_failed_variant_does_not_sink_the_audit(team):
    audit = make_audit(team)
    claim = services.audit_claim(audit_id=audit.pk, hostname="w1")
    doc = result_doc()
    doc["variants"].append({"recipe": "int8-dynamic", "status": "failed", "error": "no int8 kernel", "measurements": []})
    services.audit_store_result(audit_id=audit.pk, attempt=claim.attempt, result=doc)
    audit.refresh_from_db()
    assert audit.status == "succeeded"
    assert Variant.objects.get(audit=audit, recipe="int8-dynamic").error == "no int8 kernel"


def test_audit_with_no_measured_variant_fails_with_reasons(team):
    audit = make_audit(team)
    claim = services.audit_claim(audit_id=audit.pk, hostname="w1")
    doc = result_doc(variants=[{"recipe": "baseline", "status": "failed", "error": "shape mismatch", "measurements": []}])
    services.audit_store_result(audit_id=audit.pk, attempt=claim.attempt, result=doc)
    audit.refresh_from_db()
    assert audit.status == "failed" and "shape mismatch" in audit.error


def test_cancelled_audit_rejects_the_running_attempt(team):
    audit = make_audit(team)
    claim = services.audit_claim(audit_id=audit.pk, hostname="w1")
    assert services.audit_cancel(audit=audit)
    assert services.audit_progress(audit_id=audit.pk, attempt=claim.attempt) is False
    assert services.audit_store_result(audit_id=audit.pk, attempt=claim.attempt, result=result_doc()) is False
    assert Audit.objects.get(pk=audit.pk).status == "cancelled"
    assert Variant.objects.count() == 0


def test_measurement_doc_fields_all_stored(team):
    audit = make_audit(team)
    claim = services.audit_claim(audit_id=audit.pk, hostname="w1")
    doc = result_doc()
    doc["variants"][0]["measurements"] = [measurement_doc(4, flags=["contended"], energy_method="rapl", energy_estimated=False)]
    services.audit_store_result(audit_id=audit.pk, attempt=claim.attempt, result=doc)
    m = Measurement.objects.get()
    assert (m.batch_size, m.flags, m.energy_method, m.energy_estimated) == (4, ["contended"], "rapl", False)
    assert m.power_trace == [[0.0, 9.8], [0.5, 10.1]]


def test_reaper_resends_queued_audits_whose_message_was_lost(team, settings, no_dispatch):
    long_ago = timezone.now() - timedelta(seconds=settings.AUDIT_RESEND_QUEUED_AFTER_S + 60)
    lost = make_audit(team)
    Audit.objects.filter(pk=lost.pk).update(created_at=long_ago, dispatched_at=long_ago)
    never_sent = make_audit(team)
    Audit.objects.filter(pk=never_sent.pk).update(created_at=long_ago)
    recent = make_audit(team)  # its message is presumably still on its way
    counts = services.audits_reap_stale()
    assert counts["resent"] == 2
    assert sorted(no_dispatch) == sorted([(lost.pk, "cpu"), (never_sent.pk, "cpu")])
    assert recent.pk not in [pk for pk, _ in no_dispatch]


def test_reaper_leaves_an_audit_whose_heartbeat_arrived_meanwhile(team, settings):
    stale = timezone.now() - timedelta(seconds=settings.AUDIT_STALE_AFTER_S + 5)
    audit = make_audit(team, status=Audit.Status.RUNNING, attempts=1, heartbeat_at=timezone.now())
    # the reaper saw a stale heartbeat, but the worker beat just before the UPDATE
    assert not services.audit_requeue(audit_id=audit.pk, attempt=1, reason="x", stale_before=stale)
    assert Audit.objects.get(pk=audit.pk).status == "running"


def test_audits_go_only_to_hardware_queues(member, team):
    from django.core.exceptions import ValidationError

    from .factories import make_version

    version = make_version(team)
    for queue in ("maintenance", "celery", "", "gpu h100"):
        with pytest.raises(ValidationError):
            services.audit_request(user=member, model_version=version, target_queue=queue)
    assert Audit.objects.count() == 0


def test_a_result_that_cannot_be_stored_fails_the_audit_with_the_reason(team, monkeypatch):
    from workers import tasks

    audit = make_audit(team)
    monkeypatch.setattr(tasks, "build_engine_request", lambda audit: {})
    doc = result_doc()
    doc["variants"][0]["measurements"][0]["energy_j_per_inference"] = None  # a figure the table requires
    monkeypatch.setattr(tasks, "run_engine_for_audit", lambda **kw: doc)
    with pytest.raises(Exception):
        tasks.run_audit.run(audit.pk)
    audit.refresh_from_db()
    assert audit.status == "failed" and "could not be stored" in audit.error


def test_a_single_call_measurement_without_interval_is_stored(team):
    audit = make_audit(team)
    claim = services.audit_claim(audit_id=audit.pk, hostname="w1")
    doc = result_doc()
    doc["variants"][0]["measurements"] = [measurement_doc(1, latency_ci95_ms=None, iterations=1, windows=1)]
    assert services.audit_store_result(audit_id=audit.pk, attempt=claim.attempt, result=doc)
    assert Measurement.objects.get().latency_ci95_ms is None


def test_gpu_audits_get_long_windows_for_the_nvml_counter(member, team, settings):
    from .factories import make_version

    version = make_version(team)
    gpu = services.audit_request(user=member, model_version=version, target_queue="gpu", device="cuda")
    cpu = services.audit_request(user=member, model_version=version, target_queue="cpu", device="cpu")
    assert gpu.options["window_s"] == settings.ENGINE_GPU_WINDOW_S == 10.0
    assert cpu.options["window_s"] == settings.ENGINE_WINDOW_S


def test_progress_never_goes_back_within_an_attempt_and_carries_the_engine_s_words(team):
    audit = make_audit(team)
    claim = services.audit_claim(audit_id=audit.pk, hostname="w1")
    assert services.audit_progress(audit_id=audit.pk, attempt=claim.attempt, percent=60.0, stage="measuring",
                                   message="measuring int8-dynamic at batch 8")
    # a power-limit sweep's second engine run starts again from 0
    assert services.audit_progress(audit_id=audit.pk, attempt=claim.attempt, percent=5.0)
    audit.refresh_from_db()
    assert audit.progress == 60.0 and audit.progress_message == "measuring int8-dynamic at batch 8"


def test_a_power_sweep_s_runs_share_one_rising_progress_bar(team, monkeypatch):
    """Each engine run of a sweep goes 0-100%; the audit's percentage places it in the sweep."""
    from workers import runner

    audit = make_audit(team)
    claim = services.audit_claim(audit_id=audit.pk, hostname="w1")
    seen = []

    def engine(request, *, on_event, **kwargs):
        for p in (0.0, 50.0, 100.0):
            on_event({"event": "progress", "stage": "measuring", "percent": p})
            audit.refresh_from_db()
            seen.append(audit.progress)
        return {}

    def two_step_sweep(request, run_once):
        return [run_once(dict(request, sweep_step=[i, 2])) for i in range(2)]

    monkeypatch.setattr(runner, "run_engine", engine)
    monkeypatch.setattr(runner, "sweep_or_run", two_step_sweep)
    runner.run_engine_for_audit(audit_id=audit.pk, attempt=claim.attempt, request={"options": {}})
    assert seen == [0.0, 25.0, 50.0, 50.0, 75.0, 100.0]
