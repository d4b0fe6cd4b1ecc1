"""An audit requested in the web process reaches the broker the settings name, whatever
the environment says: the tasks are bound to the project's Celery app, not Celery's default."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
from django.core.management import call_command
call_command("migrate", verbosity=0)
from audit.services.audits import _dispatch
_dispatch(4242, "cpu")
"""


def test_dispatch_writes_to_the_configured_filesystem_broker(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELERY_")}
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        CELERY_FS_BROKER_DIR=str(tmp_path / "broker"),
        DJANGO_SETTINGS_MODULE="audit.settings",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    messages = list((tmp_path / "broker" / "out").glob("*.cpu.msg"))
    assert len(messages) == 1
    assert b"4242" in messages[0].read_bytes()
