"""`make run`: migrate, prepare the demo, and serve the dashboard with a worker and the
reaper beside it. Ctrl-C stops all three."""
import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from audit.demo import ensure_demo


class Command(BaseCommand):
    help = "Run the zero-setup demo: web server, Celery worker (queue cpu) and beat."

    def add_arguments(self, parser):
        parser.add_argument("--addr", default=os.environ.get("RUN_ADDR", "127.0.0.1:8000"))

    def handle(self, *args, addr, **options):
        settings.VAR_DIR.mkdir(exist_ok=True)
        call_command("migrate", interactive=False, verbosity=0)
        ensure_demo(log=self.stdout.write)
        celery = [sys.executable, "-m", "celery", "-A", "workers.celery"]
        commands = {
            "worker": celery + ["worker", "-Q", "cpu,maintenance", "-c", "1", "-n", "cpu@%h", "-l", "INFO"],
            "beat": celery + ["beat", "-l", "INFO"],
            "web": [sys.executable, "manage.py", "runserver", addr, "--noreload"],
        }
        procs = {name: subprocess.Popen(cmd, cwd=settings.BASE_DIR) for name, cmd in commands.items()}
        self.stdout.write(self.style.SUCCESS(f"Energy Audit is at http://{addr}/  (Ctrl-C stops it)"))
        try:
            while all(p.poll() is None for p in procs.values()):
                time.sleep(0.5)
            dead = [n for n, p in procs.items() if p.poll() is not None]
            self.stderr.write(f"{', '.join(dead)} stopped; shutting down the rest.")
        except KeyboardInterrupt:
            self.stdout.write("Stopping...")
        finally:
            for p in procs.values():
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs.values():
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
