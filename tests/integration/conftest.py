"""Real Celery worker processes against the configured PostgreSQL and broker.

These tests need a database another process can reach (PostgreSQL) and a broker;
.ci/run provides both. Without them they skip locally, and fail in CI."""
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from audit.models import Audit, WorkerNode

from ..conftest import IN_CI

ROOT = Path(__file__).resolve().parents[2]


def _require_services():
    engine = settings.DATABASES["default"]["ENGINE"]
    if "postgresql" not in engine:
        message = "integration tests need DATABASE_URL to name PostgreSQL (see .ci/run)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def _database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _purge_broker() -> None:
    url = settings.CELERY_BROKER_URL
    if url.startswith("redis://"):
        import redis

        redis.Redis.from_url(url).flushdb()


class WorkerProcess:
    """One `celery worker` process (its own session, so it can be killed whole)."""

    def __init__(self, env: dict, log_path: Path, queues: str = "cpu,maintenance"):
        self.hostname = f"test-{uuid.uuid4().hex[:8]}@localhost"
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.celery", "worker", "-Q", queues, "-c", "1",
             "-n", self.hostname, "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO"],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log()}")
            if WorkerNode.objects.filter(hostname=self.hostname).exists():
                return
            time.sleep(0.3)
        raise AssertionError(f"worker did not register within {timeout}s:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL the worker and its pool: no warm shutdown, no message given back."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-6000:]


@pytest.fixture
def worker_env(transactional_db, settings, _storage, tmp_path):
    _require_services()
    _purge_broker()
    # Short windows and heartbeats keep the audits quick; the same settings a deployment reads.
    settings.ENGINE_WINDOW_S = 0.2
    settings.ENGINE_TIME_CAP_S = 1.0
    settings.ENGINE_IDLE_S = 0.2
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "STORAGE_ROOT": str(_storage),
        "AUDIT_HEARTBEAT_S": "0.5",
        "AUDIT_STALE_AFTER_S": "4",
        "CELERY_VISIBILITY_TIMEOUT_S": "6",
        "CELERY_UNACKED_RESTORE_INTERVAL_S": "1",
        "AUDIT_TASK_HARD_LIMIT_S": "240",
        "WORKER_STALE_AFTER_S": "60",
        "PYTHONUNBUFFERED": "1",
    }
    return env


@pytest.fixture
def start_worker(worker_env, tmp_path):
    workers: list[WorkerProcess] = []

    def start() -> WorkerProcess:
        worker = WorkerProcess(worker_env, tmp_path / f"worker-{len(workers)}.log")
        workers.append(worker)
        worker.wait_ready()
        return worker

    yield start
    for worker in workers:
        worker.stop()


def wait_for(predicate, *, timeout: float, what: str, logs=lambda: ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs()}")


def audit_state(pk: int) -> Audit:
    return Audit.objects.get(pk=pk)


# --- a real browser ---------------------------------------------------------------------
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


@pytest.fixture
def browser_page():
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail(f"Chromium not found at {CHROMIUM}; .ci/run installs Debian's chromium package")
        pytest.skip(f"Chromium not found at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls in the test are
    # still synchronous and safe here.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.console_errors = errors
        yield page
        browser.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
