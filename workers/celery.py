"""The Celery app. Audits are routed to a queue per hardware target (cpu, gpu,
gpu-h100, ...); maintenance work (the reaper) goes to its own queue."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "audit.settings")
# Number GPUs the way nvidia-smi and NVML do, so an index in CUDA_VISIBLE_DEVICES means the
# same card to torch in the engine child and to NVML in the energy meter.
os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

from workers import fsbroker  # noqa: E402

# filesystem:// (the zero-setup broker) runs on workers/fsbroker.py: kombu's own is not first in first out
fsbroker.register()

app = Celery("energy_audit")


def _broker_transport_options() -> dict:
    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        folder = settings.CELERY_FS_BROKER_DIR
        for sub in ("out", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        return {
            "data_folder_in": str(folder / "out"),
            "data_folder_out": str(folder / "out"),
            "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control"),
            "store_processed": False,
        }
    return {
        # An unacknowledged audit is handed to another worker only after this long:
        # longer than the hard time limit, so a live run is never duplicated.
        "visibility_timeout": settings.CELERY_VISIBILITY_TIMEOUT_S,
        "unacked_restore_interval": settings.CELERY_UNACKED_RESTORE_INTERVAL_S,
        "unacked_restore_throttle": 1,
    }


app.conf.update(
    broker_url=settings.CELERY_BROKER_URL,
    broker_transport_options=_broker_transport_options(),
    broker_connection_retry_on_startup=True,
    result_backend=None,
    task_ignore_result=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    timezone="UTC",
    # An audit is acknowledged only when it has finished, and a worker that dies
    # mid-audit gives the message back: the audit is redelivered, never lost.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_default_queue="maintenance",
    task_routes={"workers.tasks.reap_stale_audits": {"queue": "maintenance"}},
    task_soft_time_limit=settings.AUDIT_TASK_SOFT_LIMIT_S,
    task_time_limit=settings.AUDIT_TASK_HARD_LIMIT_S,
    worker_hijack_root_logger=False,
    worker_send_task_events=False,
    beat_schedule={
        "reap-stale-audits": {
            "task": "workers.tasks.reap_stale_audits",
            "schedule": settings.AUDIT_REAPER_INTERVAL_S,
        },
    },
    beat_schedule_filename=str(settings.VAR_DIR / "celerybeat-schedule"),
)
app.autodiscover_tasks(["workers"], related_name="tasks", force=True)

import workers.signals  # noqa: E402,F401  (worker announcement and heartbeat)
