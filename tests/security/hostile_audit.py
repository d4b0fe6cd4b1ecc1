"""Audits whose every free-text field holds script, as a model running in the engine child (or a
user naming an upload) could write it: for the server-side checks (test_csp.py) and the
browser's (tests/integration/test_browser_xss.py)."""
from django.utils import timezone

from audit.models import Audit, EnergyBudget, Measurement, Review, Variant
from audit.services import audits as services

from ..factories import make_audit, make_version
from ..reports.test_report_v2 import real_doc, store

# each sets window.__xss (or opens a dialog) if it ever runs
PAYLOAD = ('<img src=x onerror="window.__xss=1;alert(1)"><svg onload="window.__xss=2">'
           '</script><script>window.__xss=3;alert(3)</script><a href="javascript:window.__xss=4">x</a>')
SHORT = '<img src=x onerror="window.__xss=5">'  # for fields of 40-60 characters
JS_URL = "javascript:window.__xss=6;alert(document.cookie)"


def _hostile_audit(team, version) -> Audit:
    audit = store(team, real_doc("engine_result_digits_v2.json"), model_version=version)
    Audit.objects.filter(pk=audit.pk).update(
        warnings=[PAYLOAD, JS_URL], quality_reasons=[f"D: {PAYLOAD}"], worker_hostname=PAYLOAD,
        carbon={**audit.carbon, "source": PAYLOAD, "region": SHORT, "licence": PAYLOAD, "source_url": JS_URL},
        options={**audit.options, "grid_intensity_g_per_kwh": 475.0, "pue": 1.0, "carbon_source": PAYLOAD,
                 "carbon_region": SHORT, "carbon_source_url": JS_URL},
        fingerprint={**audit.fingerprint, "cpu_model": PAYLOAD, "hostname": PAYLOAD, "os": PAYLOAD},
    )
    for variant in Variant.objects.filter(audit=audit):
        variant.notes = [PAYLOAD]
        variant.recipe_params = {"note": PAYLOAD}
        variant.layer_profile = [{**layer, "name": PAYLOAD, "type": SHORT} for layer in variant.layer_profile]
        if variant.recipe != "baseline":
            variant.error = PAYLOAD
        variant.save()
    Measurement.objects.filter(variant__audit=audit).update(flags=[PAYLOAD], quality_reasons=[f"C: {PAYLOAD}"])
    Review.objects.create(audit=audit, reviewer=None, decision=Review.Decision.COMMENT, comment=PAYLOAD)
    return Audit.objects.get(pk=audit.pk)


def hostile_audits(team) -> dict:
    """Two finished audits of one model (report, compare, history), a running one (progress) and
    a failed one, all under a model and label named with script."""
    EnergyBudget.objects.create(team=team, name=PAYLOAD[:120], max_latency_p95_ms=0.001)
    first = _hostile_audit(team, make_version(team, name=PAYLOAD, label=SHORT))
    second = _hostile_audit(team, make_version(team, name=PAYLOAD, label="v2" + SHORT))
    running = make_audit(team, model_version=first.model_version)
    claim = services.audit_claim(audit_id=running.pk, hostname="w1")
    services.audit_progress(audit_id=running.pk, attempt=claim.attempt, stage=SHORT, percent=40.0)
    Audit.objects.filter(pk=running.pk).update(progress_message=PAYLOAD, stage=SHORT, worker_hostname=PAYLOAD,
                                               heartbeat_at=timezone.now())
    failed = make_audit(team, model_version=first.model_version)
    claim = services.audit_claim(audit_id=failed.pk, hostname="w1")
    services.audit_fail(audit_id=failed.pk, attempt=claim.attempt, error=PAYLOAD)
    return {"first": first, "second": second, "running": running, "failed": failed}
