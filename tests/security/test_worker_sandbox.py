"""A worker that cannot build the engine's sandbox refuses to start, unless the deployment
opts out loudly with AUDIT_SANDBOX=none. The workers here consume only the maintenance
queue, so none of them registers itself as hardware in the database."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def start_worker(tmp_path, **env_overrides) -> subprocess.CompletedProcess | None:
    env = {**os.environ, **env_overrides, "CELERY_BROKER_URL": "memory://", "DJANGO_SETTINGS_MODULE": "audit.settings"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "workers.celery", "worker", "-Q", "maintenance", "-c", "1", "--pool", "solo",
         "-n", f"sandbox-check-{os.getpid()}@%h", "-l", "INFO"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=40)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        return subprocess.CompletedProcess(proc.args, None, out)  # still running: it started


def test_worker_without_bubblewrap_refuses_to_start(tmp_path):
    done = start_worker(tmp_path, AUDIT_BWRAP=str(tmp_path / "no-bwrap"), AUDIT_SANDBOX="bwrap")
    assert done.returncode not in (None, 0), done.stdout[-3000:]
    assert "The engine sandbox cannot be built on this host" in done.stdout
    assert "AUDIT_SANDBOX=none" in done.stdout


def test_worker_with_a_bad_sandbox_mode_refuses_to_start(tmp_path):
    done = start_worker(tmp_path, AUDIT_SANDBOX="chroot")
    assert done.returncode not in (None, 0), done.stdout[-3000:]
    assert "AUDIT_SANDBOX='chroot' is not one of bwrap, none" in done.stdout


def test_opted_out_worker_starts_and_says_so_loudly(tmp_path):
    env = {**os.environ, "AUDIT_SANDBOX": "none", "AUDIT_BWRAP": str(tmp_path / "no-bwrap"),
           "CELERY_BROKER_URL": "memory://", "DJANGO_SETTINGS_MODULE": "audit.settings"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "workers.celery", "worker", "-Q", "maintenance", "-c", "1", "--pool", "solo",
         "-n", f"sandbox-none-{os.getpid()}@%h", "-l", "INFO"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if " ready." in line:
                break
    finally:
        proc.kill()
        proc.communicate()
    text = "".join(seen)
    assert " ready." in text, text[-3000:]
    assert "AUDIT_SANDBOX=none: uploaded models run WITHOUT a sandbox" in text
