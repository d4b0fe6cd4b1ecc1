"""A worker killed mid-audit leaves the engine's private folder behind; the reaper (and every
new worker process) removes it, and never a live worker's."""
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from workers.engine.private_dirs import _start_ticks, remove_stale_private_dirs
from workers.tasks import reap_stale_audits

ROOT = Path(__file__).resolve().parents[2]
FAKE_ENTRY = ROOT / "tests" / "engine" / "fake_child_entry.py"


def killed_worker_leaves_a_folder(tmp_root: Path) -> Path:
    """Run the engine from a process that is SIGKILLed mid-audit, as the OOM killer or Celery's
    hard time limit would; return the private folder it left."""
    code = (
        "import sys; from workers.engine.supervise import run_engine\n"
        "run_engine({'behaviour': 'sleep', 'seconds': 30, 'report_pid': True}, timeout_s=60, _entry=[sys.argv[1]],\n"
        "           on_event=lambda e: print(e['message'], flush=True))\n"
    )
    env = {**os.environ, "TMPDIR": str(tmp_root)}
    worker = subprocess.Popen([sys.executable, "-c", code, str(FAKE_ENTRY)], stdout=subprocess.PIPE, text=True,
                              cwd=ROOT, env=env)
    try:
        worker.stdout.readline()  # the child runs
        worker.kill()
        worker.wait()
    finally:
        worker.kill()
        worker.stdout.close()
    time.sleep(0.3)
    left = [p for p in tmp_root.iterdir() if p.name.startswith("audit-engine-")]
    assert len(left) == 1, left
    return left[0]


def test_a_killed_workers_folder_is_removed_and_a_live_ones_kept(tmp_path):
    leftover = killed_worker_leaves_a_folder(tmp_path)
    mine = tempfile.mkdtemp(prefix=f"audit-engine-{os.getpid()}-{_start_ticks(os.getpid())}-", dir=tmp_path)
    reused_pid = tmp_path / f"audit-engine-{os.getpid()}-1-abc"  # this pid, but another process's start
    reused_pid.mkdir()
    legacy_old, legacy_new = tmp_path / "audit-engine-oldstyle", tmp_path / "audit-engine-newstyle"
    legacy_old.mkdir()
    legacy_new.mkdir()
    old = time.time() - 3 * 24 * 3600
    os.utime(legacy_old, (old, old))
    unrelated = tmp_path / "something-else"
    unrelated.mkdir()

    removed = remove_stale_private_dirs(str(tmp_path))
    assert sorted(removed) == sorted(map(str, [leftover, reused_pid, legacy_old]))
    assert not leftover.exists() and not reused_pid.exists() and not legacy_old.exists()
    assert Path(mine).exists() and legacy_new.exists() and unrelated.exists()


@pytest.mark.django_db
def test_the_reaper_task_removes_them(tmp_path, monkeypatch):
    leftover = killed_worker_leaves_a_folder(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    counts = reap_stale_audits()
    assert counts["engine_temp_dirs_removed"] == 1
    assert not leftover.exists()
