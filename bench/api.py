"""Export benchmark: stream /api/v1/audits/export.csv (and .json) of 100,000 measurement rows
from a real web process and report rows per second and that process's peak memory.

- Seeds a PostgreSQL database of its own (default `energy_audit_bench`, created if missing,
  migrated by this script, never dropped) with one team, a 10,000-row audit and a 90,000-row
  audit, by bulk_create. An existing seed of the right size is reused.
- Serves the app with gunicorn (one sync worker, the production server) and downloads the
  export with a token, reading the body as it arrives.
- Samples the worker's RSS (psutil, every 20 ms) while the response streams; reports the
  RSS after a warm-up request, the peak during the export, and their difference. Constant
  memory shows as the same difference for 10,000 and 100,000 rows.

Run:  .venv/bin/python bench/api.py [--rows 100000] [--database-url postgres://...]
Results: docs/BENCHMARKS.md, "API export (bench/api.py)".
"""
from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/energy_audit_bench"


def ensure_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1].split("?")[0]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "audit.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def seed(rows: int) -> dict:
    """One team, two audits (10% and 90% of the rows), a token. Returns what the run needs."""
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from rest_framework.authtoken.models import Token

    from audit.models import Audit, Measurement, Membership, ModelAsset, ModelVersion, Team, Variant

    team, _ = Team.objects.get_or_create(slug="bench", defaults={"name": "Bench"})
    user, _ = get_user_model().objects.get_or_create(username="bench")
    Membership.objects.get_or_create(user=user, team=team, defaults={"role": "lead"})
    token, _ = Token.objects.get_or_create(user=user)
    asset, _ = ModelAsset.objects.get_or_create(team=team, name="bench-model")
    parts = {"small": rows // 10, "large": rows - rows // 10}
    versions = {}
    for label, n in parts.items():
        version, _ = ModelVersion.objects.get_or_create(
            asset=asset, label=label,
            defaults={"file": "bench/none.safetensors", "format": "safetensors", "sha256": label * 8, "size_bytes": 1},
        )
        versions[label] = version.pk
        have = Measurement.objects.filter(variant__audit__model_version=version).count()
        if have == n:
            continue
        with transaction.atomic():
            Audit.objects.filter(model_version=version).delete()
            audit = Audit.objects.create(
                model_version=version, status="succeeded", review_status="pending", requested_by=user,
                fingerprint={"cpu_model": "Bench CPU", "cpu_logical_cores": 2}, options={"batch_sizes": [1]},
            )
            per_variant = 1000
            variants = Variant.objects.bulk_create(
                [Variant(audit=audit, position=i, recipe=f"recipe-{i}", status="succeeded", flops=4672, macs=2336,
                         params=2410, size_bytes=9640) for i in range((n + per_variant - 1) // per_variant)]
            )
            batch = []
            for i in range(n):
                v = variants[i // per_variant]
                bs = i % per_variant + 1
                batch.append(Measurement(
                    variant=v, batch_size=bs, input_shape={"input": [bs, 64]}, latency_mean_ms=0.21, latency_std_ms=0.02,
                    latency_p50_ms=0.2, latency_p95_ms=0.25, latency_p99_ms=0.3, latency_ci95_ms=0.002,
                    throughput_samples_per_s=4800.0 * bs, energy_j_per_inference=0.002 * bs,
                    energy_j_per_inference_active=0.0015 * bs, energy_j_per_sample=0.002, wh_per_1000_inferences=0.00056 * bs,
                    samples_per_joule=500.0, avg_power_w=10.0, idle_power_w=2.5, energy_method="estimate-tdp",
                    energy_estimated=True, energy_uncertainty_rel=0.5, co2e_g_per_inference=2.6e-7 * bs,
                    peak_memory_bytes=200_000_000, iterations=500, windows=3, window_s=1.0, cv=0.09,
                    power_trace=[[0.0, 9.8], [0.5, 10.1]], flags=[],
                ))
                if len(batch) >= 5000:
                    Measurement.objects.bulk_create(batch)
                    batch = []
            Measurement.objects.bulk_create(batch)
    return {"token": token.key, "versions": versions, "parts": parts}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(url: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": url, "DJANGO_SETTINGS_MODULE": "audit.settings", "DEBUG": "0",
           "STATICFILES_BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "audit.wsgi", "-b", f"127.0.0.1:{port}", "-w", "1", "--timeout", "600",
         "--log-level", "warning"],
        cwd=ROOT, env=env,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).read()
            return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("gunicorn did not start")


def worker_process(server: subprocess.Popen):
    import psutil

    parent = psutil.Process(server.pid)
    deadline = time.time() + 10
    while time.time() < deadline:
        children = parent.children()
        if children:
            return children[0]
        time.sleep(0.1)
    return parent


class RssSampler(threading.Thread):
    def __init__(self, proc, interval=0.02):
        super().__init__(daemon=True)
        self.proc, self.interval, self.peak, self.stop = proc, interval, 0, threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)


def download(port: int, token: str, path: str) -> tuple[int, int, float]:
    """(rows, bytes, seconds) for one export, reading the body as it streams."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Token {token}"})
    started = time.perf_counter()
    newlines = size = 0
    with urllib.request.urlopen(request, timeout=600) as response:
        while chunk := response.read(256 * 1024):
            newlines += chunk.count(b"\n")
            size += len(chunk)
    return newlines, size, time.perf_counter() - started


def measure(port, token, worker, path) -> dict:
    baseline = worker.memory_info().rss
    sampler = RssSampler(worker)
    sampler.start()
    lines, size, seconds = download(port, token, path)
    sampler.stop.set()
    sampler.join()
    peak = max(sampler.peak, worker.memory_info().rss)
    return {"lines": lines, "bytes": size, "seconds": seconds, "rss_before": baseline, "rss_peak": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB))
    args = parser.parse_args()

    ensure_database(args.database_url)
    setup_django(args.database_url)
    t0 = time.perf_counter()
    info = seed(args.rows)
    print(f"seeded/checked {args.rows:,} measurement rows in {time.perf_counter() - t0:.1f} s ({args.database_url})")

    port = free_port()
    server = start_server(args.database_url, port)
    try:
        worker = worker_process(server)
        small = f"?model_version={info['versions']['small']}"
        # Warm-up: imports, the connection, the first cursor; what stays after it is the baseline.
        download(port, info["token"], "/api/v1/audits/export.csv" + small)
        download(port, info["token"], "/api/v1/audits/export.json" + small)
        runs = [
            ("csv", info["parts"]["small"], "/api/v1/audits/export.csv" + small),
            ("csv", args.rows, "/api/v1/audits/export.csv"),
            ("json", info["parts"]["small"], "/api/v1/audits/export.json" + small),
            ("json", args.rows, "/api/v1/audits/export.json"),
        ]
        print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
              "gunicorn 1 sync worker, PostgreSQL on localhost")
        print(f"{'format':6} {'rows':>8} {'seconds':>8} {'rows/s':>9} {'MB':>7} {'RSS before':>11} {'RSS peak':>9} {'delta':>8}")
        for fmt, rows, path in runs:
            r = measure(port, info["token"], worker, path)
            rows_out = r["lines"] - 1 if fmt == "csv" else rows  # CSV: header line
            if fmt == "csv":
                assert rows_out == rows, (rows_out, rows)
            mib = 1024 * 1024
            print(f"{fmt:6} {rows:>8,} {r['seconds']:>8.2f} {rows / r['seconds']:>9,.0f} {r['bytes'] / 1e6:>7.1f} "
                  f"{r['rss_before'] / mib:>8.1f} MiB {r['rss_peak'] / mib:>5.1f} MiB {(r['rss_peak'] - r['rss_before']) / mib:>+5.1f} MiB")
    finally:
        server.terminate()
        server.wait(timeout=20)


if __name__ == "__main__":
    main()
