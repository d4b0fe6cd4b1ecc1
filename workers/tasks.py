"""Thin tasks: load by id, run the engine in its sandboxed child, store through services."""
import logging
import time

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

from audit.services import audits as audit_services
from audit.uploadhandlers import remove_stale_upload_temp_files
from workers.celery import app  # tasks bind to our configured app, in the web process too
from workers.engine.errors import EngineFailure
from workers.engine.private_dirs import remove_stale_private_dirs
from workers.result_schema import ResultRefused
from workers.runner import AuditLost, accept_result, build_engine_request, run_engine_for_audit

log = logging.getLogger(__name__)


@app.task(bind=True, name="workers.tasks.run_audit", max_retries=None)
def run_audit(self, audit_id: int) -> str:
    claim = audit_services.audit_claim(audit_id=audit_id, hostname=self.request.hostname or "unknown")
    if claim.outcome == "busy":
        # A redelivered message for an audit a live worker is still running: look again
        # once its heartbeat could have gone stale.
        raise self.retry(countdown=settings.AUDIT_STALE_AFTER_S, queue=claim.audit.target_queue)
    if claim.outcome != "claimed":
        log.info("audit %s not run: %s", audit_id, claim.outcome)
        return claim.outcome
    attempt = claim.attempt
    try:
        request = build_engine_request(claim.audit)
        result = run_engine_for_audit(audit_id=audit_id, attempt=attempt, request=request)
        result = accept_result(result, request)
    except AuditLost:
        log.info("audit %s attempt %s lost its claim (cancelled or taken over)", audit_id, attempt)
        return "lost"
    except EngineFailure as exc:
        audit_services.audit_fail(audit_id=audit_id, attempt=attempt, error=_failure_message(exc))
        return "failed"
    except ResultRefused as exc:  # the child's result is untrusted input, and this one is not acceptable
        audit_services.audit_fail(audit_id=audit_id, attempt=attempt,
                                  error=f"The measurement's result was refused: {exc}")
        return "failed"
    except SoftTimeLimitExceeded:
        audit_services.audit_fail(
            audit_id=audit_id,
            attempt=attempt,
            error=f"The audit ran past its time limit of {settings.AUDIT_TASK_SOFT_LIMIT_S} s and was stopped.",
        )
        return "failed"
    except Exception as exc:  # a bug of ours: record it on the audit, then let Celery log it
        audit_services.audit_fail(audit_id=audit_id, attempt=attempt, error=f"Internal error: {exc!r}")
        raise
    try:
        audit_services.audit_store_result(audit_id=audit_id, attempt=attempt, result=result)
    except Exception as exc:  # the measurement is done but could not be stored: say so, then let Celery log it
        audit_services.audit_fail(audit_id=audit_id, attempt=attempt, error=f"The result could not be stored: {exc!r}")
        raise
    return "stored"


def _failure_message(exc: EngineFailure) -> str:
    prefix = {
        "load-error": "The model could not be loaded",
        "crash": "The measurement process crashed",
        "killed": "The measurement process was killed",
        "timeout": "The measurement took too long",
        "oom": "The measurement process ran out of memory",
        "bad-output": "The measurement process sent output we could not read",
    }.get(exc.kind, "The measurement failed")
    # the message comes from the child (or the model inside it): a line, not a novel
    return f"{prefix}: {str(exc.message)[:2000]}"


@app.task(name="workers.tasks.reap_stale_audits")
def reap_stale_audits() -> dict:
    started = time.monotonic()
    counts = audit_services.audits_reap_stale()
    # engine private folders left on this host by a worker killed mid-audit
    counts["engine_temp_dirs_removed"] = len(remove_stale_private_dirs())
    counts["upload_temp_files_removed"] = len(remove_stale_upload_temp_files())  # left by killed web processes
    log.info("reaper: %s in %.2fs", counts, time.monotonic() - started)
    return counts
