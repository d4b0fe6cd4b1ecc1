"""End to end with a real Celery worker process: upload through the web client,
request an audit, and see it measured and stored; kill the worker mid-audit and
see the audit redelivered and finished, never left running."""
import psutil
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from audit.models import Audit, Measurement, ModelVersion, Variant

from ..models import mlp_safetensors_bytes
from .conftest import audit_state, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]


def upload_and_request(client, *, batch_sizes: str) -> Audit:
    response = client.post(
        reverse("model-upload"),
        {"name": "digits-mlp", "task": "classification",
         "file": SimpleUploadedFile("model.safetensors", mlp_safetensors_bytes(config={"in_features": 64, "hidden": [256, 256], "num_classes": 10}))},
    )
    assert response.status_code == 302, response.content.decode()[-2000:]
    version = ModelVersion.objects.get()
    response = client.post(
        reverse("audit-create", args=[version.pk]),
        {"target": "cpu", "batch_sizes": batch_sizes, "recipes": ["baseline"]},
    )
    assert response.status_code == 302, response.content.decode()[-2000:]
    return Audit.objects.get()


def test_uploaded_model_is_audited_by_a_real_worker(client, member, start_worker):
    worker = start_worker()
    client.force_login(member)
    audit = upload_and_request(client, batch_sizes="1,4")

    final = wait_for(
        lambda: (a := audit_state(audit.pk)).is_finished and a, timeout=180, what="the audit to finish", logs=worker.log
    )
    assert final.status == Audit.Status.SUCCEEDED, final.error + worker.log()
    assert final.attempts == 1 and final.progress == 100.0
    baseline = Variant.objects.get(audit=final, recipe="baseline")
    # 64->256->256->10 MLP: 2 FLOPs per multiply-add, per sample
    assert baseline.macs == 64 * 256 + 256 * 256 + 256 * 10
    assert baseline.flops == 2 * baseline.macs
    assert baseline.params == (64 * 256 + 256) + (256 * 256 + 256) + (256 * 10 + 10)
    rows = Measurement.objects.filter(variant=baseline).order_by("batch_size")
    assert [m.batch_size for m in rows] == [1, 4]
    for m in rows:
        assert 0 < m.latency_p50_ms <= m.latency_p95_ms <= m.latency_p99_ms
        assert m.iterations >= 10
        assert m.energy_j_per_inference > 0
        assert m.energy_method in {"rapl", "estimate-tdp"}
        assert m.energy_j_per_sample == pytest.approx(m.energy_j_per_inference / m.batch_size)
        # every boundary stored (issue 23): device is the headline, host adds DRAM, facility x PUE
        assert m.energy_boundary == "device" and set(m.energy_boundaries) == {"device", "host", "facility"}
        assert m.energy_boundaries["host"]["j_per_inference"] >= m.energy_j_per_inference
        assert m.co2e_boundary in {"host", "facility"}
    assert final.fingerprint  # the hardware it ran on is stored with the result

    page = client.get(final.get_absolute_url()).content.decode()
    assert "report-table" in page and rows[0].energy_method in page


def engine_children(worker_pid: int) -> list[psutil.Process]:
    """The engine child processes (bwrap and the sandboxed interpreter) this worker started:
    its descendants only, never another run's children on the same machine (counting every
    "workers.engine child" on the host made this test fail under load while a parallel run
    audited)."""
    found = []
    for proc in psutil.Process(worker_pid).children(recursive=True):
        try:
            cmd = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        if "workers.engine" in cmd and "child" in cmd:
            found.append(proc)
    return found


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    """Those still running (a zombie has died: only its exit status is left to collect)."""
    running = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                running.append(proc)
        except psutil.Error:
            continue
    return running


def test_killed_worker_mid_audit_is_redelivered_and_finishes(client, member, start_worker, settings):
    settings.ENGINE_WINDOW_S = 0.5
    settings.ENGINE_TIME_CAP_S = 3.0
    first = start_worker()
    client.force_login(member)
    audit = upload_and_request(client, batch_sizes="1,2,4,8,16")

    wait_for(
        lambda: (a := audit_state(audit.pk)).status == "running" and "measuring" in a.stage,
        timeout=120, what="the audit to start measuring", logs=first.log,
    )
    children = engine_children(first.proc.pid)
    assert children, "no engine child found under the worker"
    first.kill()
    # SIGKILL reaches bwrap through its parent-death signal and the sandbox through bwrap's
    # --die-with-parent at once; the time allowed is for a loaded 2-core host to schedule exits
    wait_for(lambda: not alive(children), timeout=30, what="the engine child to die with its worker")
    assert audit_state(audit.pk).status == "running"  # nobody has noticed yet

    second = start_worker()
    final = wait_for(
        lambda: (a := audit_state(audit.pk)).is_finished and a, timeout=240, what="the redelivered audit to finish",
        logs=lambda: first.log() + "\n---- second worker ----\n" + second.log(),
    )
    assert final.status == Audit.Status.SUCCEEDED, final.error
    assert final.attempts == 2
    assert final.worker_hostname == second.hostname
    assert Measurement.objects.filter(variant__audit=final).count() == 5
