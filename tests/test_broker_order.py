"""The zero-setup broker of `make run` (a ``filesystem://`` URL) hands audits out first in first
out (workers/fsbroker.py). kombu's own names message files with an unpadded monotonic
millisecond count and a random uuid, and serves them in sorted-name order: messages queued in
the same millisecond come out in random order, and a count that gains a digit sorts first."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kombu import Connection

from audit.models import Audit

from .factories import make_audit
from .integration.conftest import ROOT, WorkerProcess, _database_url, _require_services, wait_for

pytestmark = pytest.mark.timeout(300)


def _transport_options(folder: Path) -> dict:
    """The transport options workers/celery.py gives a filesystem broker, for this folder."""
    from django.test import override_settings

    from workers.celery import _broker_transport_options

    with override_settings(CELERY_BROKER_URL="filesystem://", CELERY_FS_BROKER_DIR=folder):
        return _broker_transport_options()


def _drain(conn, queue: str, n: int) -> list:
    simple = conn.SimpleQueue(queue)
    out = []
    for _ in range(n):
        message = simple.get(timeout=5)
        out.append(message.payload)
        message.ack()
    simple.close()
    return out


def test_filesystem_urls_name_the_fifo_transport():
    import workers.celery  # noqa: F401  (registers the transport, as every web and worker process does)
    from workers.fsbroker import Transport

    assert Connection("filesystem://").transport_cls == "filesystem"
    assert isinstance(Connection("filesystem://").transport, Transport)


def test_messages_come_out_in_the_order_they_went_in_across_a_clock_digit_boundary(tmp_path, monkeypatch):
    """The clock gains a digit between the second and the third message (kombu's names would
    sort 10000000000... before 9999999999...), and the first two share a clock reading."""
    import workers.celery  # noqa: F401
    from workers import fsbroker

    readings = iter([9_999_999_999, 9_999_999_999, 10_000_000_000, 10_000_000_001])
    monkeypatch.setattr(fsbroker.Channel, "clock", staticmethod(lambda: next(readings)))
    monkeypatch.setattr(fsbroker, "_last_ns", 0)
    with Connection("filesystem://", transport_options=_transport_options(tmp_path)) as conn:
        producer = conn.SimpleQueue("cpu")
        for n in ("first", "second", "third", "fourth"):
            producer.put({"audit": n})
        producer.close()
        names = sorted(os.listdir(tmp_path / "out"))
        assert len(names) == 4 and all(name.endswith(".cpu.msg") for name in names)
        assert [p["audit"] for p in _drain(conn, "cpu", 4)] == ["first", "second", "third", "fourth"]
    assert os.listdir(tmp_path / "out") == []


def test_a_real_worker_claims_audits_in_the_order_they_were_queued(transactional_db, team, tmp_path, _storage):
    """Three audits queued one after the other by a web process (the services' own dispatch, in
    a process of its own with the filesystem broker), then a real Celery worker started on the
    same folder: it claims them in the order they were queued."""
    _require_services()
    audits = [make_audit(team) for _ in range(3)]
    for audit in audits:  # nothing to measure: each fails at once when the worker runs it
        Path(audit.model_version.file.path).unlink()
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": "filesystem://",
        "CELERY_FS_BROKER_DIR": str(tmp_path / "broker"),
        "STORAGE_ROOT": str(_storage),
        "AUDIT_HEARTBEAT_S": "0.5",
        "AUDIT_MAX_ATTEMPTS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    ids = [a.pk for a in audits]
    publish = (
        "import workers.celery\n"
        "from audit.services.audits import _dispatch\n"
        f"for pk in {ids!r}:\n"
        "    _dispatch(pk, 'cpu')\n"
    )
    done = subprocess.run([sys.executable, "-c", publish], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(os.listdir(tmp_path / "broker" / "out")) == 3

    worker = WorkerProcess(env, tmp_path / "worker.log", queues="cpu")
    try:
        worker.wait_ready()
        wait_for(lambda: all(a.is_finished for a in Audit.objects.filter(pk__in=ids)), timeout=180,
                 what="the three audits to be claimed and finished", logs=worker.log)
    finally:
        worker.stop()
    claimed = list(Audit.objects.filter(pk__in=ids).order_by("started_at").values_list("pk", flat=True))
    assert claimed == ids, worker.log()
