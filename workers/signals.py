"""A worker announces itself (queue, device, hardware fingerprint) when it is ready,
keeps a heartbeat while it lives, and retires when it shuts down cleanly."""
import logging
import os
import threading

import ctypes
import sys

from celery.signals import worker_init, worker_process_init, worker_ready, worker_shutdown
from django.conf import settings
from django.db import close_old_connections, connection

from audit.services.workers import worker_node_heartbeat, worker_node_register, worker_node_retire

log = logging.getLogger(__name__)
_stop = threading.Event()
MAINTENANCE_QUEUES = {"maintenance", "celery"}


def _hardware_queue(consumer) -> str:
    names = sorted(consumer.app.amqp.queues.consume_from or {})
    hardware = [n for n in names if n not in MAINTENANCE_QUEUES]
    return hardware[0] if hardware else ""


def _heartbeat_loop(hostname: str, interval: float) -> None:
    while not _stop.wait(interval):
        try:
            close_old_connections()
            worker_node_heartbeat(hostname=hostname)
        except Exception:  # the database may be briefly away; try again next beat
            log.exception("worker heartbeat failed")
        finally:
            connection.close()


PR_SET_DUMPABLE = 4


@worker_init.connect
@worker_process_init.connect
def hide_worker_environment(**kwargs):
    """Defence in depth beside the sandbox: the engine child runs in its own PID namespace and
    cannot see the worker at all (docs/ARCHITECTURE.md, "What the sandbox isolates"); should it
    ever run without one (AUDIT_SANDBOX=none) under the same user, a non-dumpable worker's
    /proc/<pid>/environ (database and broker credentials) still belongs to root."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
        except (OSError, AttributeError):
            log.warning("could not make the worker non-dumpable")


@worker_init.connect
def warn_if_root(**kwargs):
    """A root worker still runs the engine child as an unprivileged host user (the sandbox
    starts it as AUDIT_SANDBOX_HOST_UID, 65534 by default), but everything around the child (the
    worker's own code, the libraries it loads, the broker and database credentials it holds) runs
    with every privilege, and the sandbox's staging needs root's mount rights. Say so at start."""
    if os.geteuid() != 0:
        return
    from workers.engine.sandbox import DEFAULT_HOST_ID, HOST_UID_ENV

    uid = os.environ.get(HOST_UID_ENV) or DEFAULT_HOST_ID
    log.warning(
        "THIS WORKER RUNS AS ROOT. The engine child is started as host uid %s, never as root, but a "
        "worker process compromised through any other path holds the whole host. Run workers as an "
        "unprivileged user (the Docker image does: user audit); see docs/ARCHITECTURE.md, "
        "'What the sandbox isolates and what it does not'.", uid)


@worker_init.connect
def require_engine_sandbox(**kwargs):
    """Refuse to start a worker that cannot build the engine's sandbox (bubblewrap missing, or
    user namespaces not allowed here), unless the deployment opted out with AUDIT_SANDBOX=none.
    Celery logs and swallows exceptions from signal handlers; SystemExit it does not."""
    from workers.engine.sandbox import check_sandbox

    problem = check_sandbox()
    if problem:
        log.critical("%s", problem)
        raise SystemExit(problem)
    if os.environ.get("AUDIT_SANDBOX", "").strip().lower() == "none":
        log.warning("AUDIT_SANDBOX=none: uploaded models run WITHOUT a sandbox; every result records it")


@worker_init.connect
@worker_process_init.connect
def remove_dead_workers_engine_folders(**kwargs):
    """A pool process killed mid-audit (hard time limit, OOM killer) leaves the engine's private
    folder behind; its replacement, or the next worker on this host, removes it."""
    from workers.engine.private_dirs import remove_stale_private_dirs

    for path in remove_stale_private_dirs():
        log.info("removed a dead worker's engine folder %s", path)


@worker_init.connect
@worker_process_init.connect
def restore_power_limits(**kwargs):
    """A worker killed mid-sweep left a GPU at a lowered power limit and a journal saying what it
    was; put it back before this worker takes any audit (workers/power.py). Nothing to do, and
    no NVML touched, where no journal exists."""
    try:
        from workers.power import restore_from_journals

        for entry in restore_from_journals():
            log.warning("power-limit journal: %s", entry)
    except Exception:  # a broken NVML must not keep the worker from starting; the journal stays
        log.exception("restoring power limits from journals failed")


@worker_ready.connect
def announce_worker(sender, **kwargs):
    queue = _hardware_queue(sender)
    if not queue:
        return  # a maintenance-only worker offers no hardware
    from workers.engine.fingerprint import host_fingerprint

    device = os.environ.get("AUDIT_WORKER_DEVICE", "cuda" if queue.startswith("gpu") else "cpu")
    try:
        fingerprint = host_fingerprint(device)
    except Exception as exc:  # a broken NVML must not keep the worker from serving
        log.exception("hardware fingerprint failed")
        fingerprint = {"error": str(exc)}
    worker_node_register(hostname=sender.hostname, queue=queue, device=device, fingerprint=fingerprint)
    connection.close()
    interval = max(1.0, settings.WORKER_STALE_AFTER_S / 4)
    threading.Thread(target=_heartbeat_loop, args=(sender.hostname, interval), daemon=True, name="node-heartbeat").start()


@worker_shutdown.connect
def retire_worker(sender, **kwargs):
    _stop.set()
    try:
        worker_node_retire(hostname=sender.hostname)
    except Exception:
        log.exception("could not retire worker node")
