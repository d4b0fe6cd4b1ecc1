"""Server time of the report pages on a large database.

Seeds (once) 10,000 succeeded audits, each with 5 variants x 3 batch sizes (150,000
measurements, with power traces and per-layer profiles), in a PostgreSQL database of its
own, then times through Django's test client (server time: URL routing, views, queries,
template rendering; no network):

- the audit report of a random audit,
- the compare page of 3 random audits,
- the team overview (latest audits, the most energy-hungry versions and the rating spread,
  whose window function runs over all 10,000 audits; the ranking is reused until the set of
  succeeded audits changes, and the cost of the first read after a change is printed too).

Prints p50 / p95 / max and the query count of each page. Target: p95 <= 150 ms.

Run: .venv/bin/python bench/web.py            (about 2 minutes the first time, seeding)
     BENCH_DATABASE_URL=postgres://... BENCH_AUDITS=10000 BENCH_REQUESTS=60
"""
from __future__ import annotations

import os
import random
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DB_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/energy_audit_bench_web")
N_AUDITS = int(os.environ.get("BENCH_AUDITS", "10000"))
N_REQUESTS = int(os.environ.get("BENCH_REQUESTS", "60"))
VARIANTS = ["baseline", "fp16", "int8-dynamic", "prune-unstructured", "distill"]
BATCH_SIZES = [1, 8, 32]
TASKS = ["classification", "text-classification", "image-classification"]
HARDWARE = [
    ("cpu", {"cpu_model": "AMD EPYC 7B13", "cpu_logical_cores": 16}),
    ("cpu", {"cpu_model": "Intel Xeon Platinum 8480+", "cpu_logical_cores": 32}),
    ("cuda", {"cpu_model": "AMD EPYC 9654", "cpu_logical_cores": 16, "gpu": {"name": "NVIDIA H100 80GB HBM3"}}),
]


def ensure_database() -> None:
    import psycopg

    url = urlparse(DB_URL)
    name = url.path.lstrip("/")
    admin = url._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def setup_django() -> None:
    import warnings

    warnings.filterwarnings("ignore", message="No directory at")
    os.environ["DATABASE_URL"] = DB_URL
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "audit.settings")
    os.environ.setdefault("CELERY_BROKER_URL", "memory://")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.STORAGES = {**settings.STORAGES,
                         "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
    settings.DEBUG = False
    call_command("migrate", verbosity=0)


def seed(n_audits: int):
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone

    from audit.models import Audit, Measurement, Membership, ModelAsset, ModelVersion, Team, Variant

    team, _ = Team.objects.get_or_create(name="Bench Lab", defaults={"slug": "bench-lab"})
    user, created = get_user_model().objects.get_or_create(username="bench")
    if created:
        user.set_password("bench")
        user.save()
    Membership.objects.get_or_create(user=user, team=team, defaults={"role": "lead"})
    have = Audit.objects.filter(model_version__asset__team=team).count()
    if have >= n_audits:
        return team, user
    print(f"seeding {n_audits - have} audits ...", flush=True)
    rng = random.Random(0)
    t0 = time.perf_counter()
    n_models = max(1, n_audits // 20)  # 20 versions a model
    now = timezone.now()
    trace = [[round(i * 0.05, 2), 0.0] for i in range(40)]
    layers = [{"name": f"encoder.layer.{i}", "type": "Linear", "flops": 10_000_000 * (15 - i), "macs": 5_000_000 * (15 - i),
               "params": 1_000_000, "share": 1 / 15} for i in range(15)]
    with transaction.atomic():
        assets = ModelAsset.objects.bulk_create(
            [ModelAsset(team=team, name=f"bench-model-{i:04d}", task=TASKS[i % len(TASKS)]) for i in range(have // 20, n_models)]
        )
        versions = ModelVersion.objects.bulk_create(
            [ModelVersion(asset=a, label=f"v{j + 1}", file=f"models/bench/{a.pk}-{j}.safetensors", format="safetensors",
                          sha256=f"{a.pk:032d}{j:032d}", size_bytes=4_000_000, uploaded_by=user)
             for a in assets for j in range(20)],
            batch_size=2000,
        )
        audits = []
        for k, v in enumerate(versions):
            device, fp = HARDWARE[k % len(HARDWARE)]
            finished = now - timezone.timedelta(minutes=len(versions) - k)
            audits.append(Audit(
                model_version=v, target_queue="gpu" if device == "cuda" else "cpu", device=device,
                options={"batch_sizes": BATCH_SIZES, "recipes": VARIANTS, "grid_intensity_g_per_kwh": 475.0, "pue": 1.0,
                         "carbon_source": "world average (default)"},
                status="succeeded", stage="done", progress=100.0, attempts=1, requested_by=user,
                fingerprint={**fp, "device": device, "threads": 4}, engine_version="0.1.0",
                started_at=finished - timezone.timedelta(minutes=3), finished_at=finished, review_status="pending",
            ))
        audits = Audit.objects.bulk_create(audits, batch_size=2000)
        variants = Variant.objects.bulk_create(
            [Variant(audit=a, position=p, recipe=r, status="succeeded", params=10_000_000, nonzero_params=10_000_000,
                     size_bytes=40_000_000 // (p + 1), flops=2_000_000_000 // (p + 1), macs=1_000_000_000 // (p + 1),
                     layer_profile=layers)
             for a in audits for p, r in enumerate(VARIANTS)],
            batch_size=5000,
        )
        measurements = []
        for v in variants:
            base = rng.uniform(0.01, 0.5) * (1 - 0.12 * v.position)
            for b in BATCH_SIZES:
                e = base * b ** 0.6
                measurements.append(Measurement(
                    variant=v, batch_size=b, input_shape={"input": [b, 128]}, latency_mean_ms=2.0 * b ** 0.7,
                    latency_std_ms=0.1, latency_p50_ms=2.0 * b ** 0.7, latency_p95_ms=2.3 * b ** 0.7,
                    latency_p99_ms=2.6 * b ** 0.7, latency_ci95_ms=0.02, throughput_samples_per_s=500.0 * b ** 0.3,
                    energy_j_per_inference=e, energy_j_per_inference_active=e * 0.7, energy_j_per_sample=e / b,
                    wh_per_1000_inferences=e * 1000 / 3600, samples_per_joule=b / e, avg_power_w=120.0, idle_power_w=40.0,
                    energy_method="nvml-counter", energy_estimated=False, energy_uncertainty_rel=0.03,
                    co2e_g_per_inference=e / 3.6e6 * 475, peak_memory_bytes=2_000_000_000, iterations=500, windows=5,
                    window_s=2.0, cv=0.04, power_trace=[[t, 120.0 + 5 * ((i % 7) - 3)] for i, (t, _) in enumerate(trace)],
                    flags=[],
                ))
        Measurement.objects.bulk_create(measurements, batch_size=5000)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(f"seeded in {time.perf_counter() - t0:.0f} s", flush=True)
    return team, user


def timed(client, url: str) -> tuple[float, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        t0 = time.perf_counter()
        response = client.get(url)
        elapsed = (time.perf_counter() - t0) * 1000
    assert response.status_code == 200, (url, response.status_code)
    return elapsed, len(ctx.captured_queries)


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))]


def main() -> None:
    ensure_database()
    setup_django()
    from django.test import Client
    from django.urls import reverse

    from audit.models import Audit

    team, user = seed(N_AUDITS)
    ids = list(Audit.objects.filter(model_version__asset__team=team).values_list("pk", flat=True))
    client = Client()
    client.force_login(user)
    rng = random.Random(1)
    pages = {
        "report": lambda: reverse("audit-detail", args=[rng.choice(ids)]),
        "compare (3 audits)": lambda: reverse("compare") + "?" + "&".join(f"a={i}" for i in rng.sample(ids, 3)),
        "team overview": lambda: reverse("home"),
    }
    print(f"{len(ids)} audits, {len(VARIANTS)} variants x {len(BATCH_SIZES)} batch sizes each; {N_REQUESTS} requests a page")
    print(f"{'page':<20} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'queries':>8}")
    ok = True
    for name, url in pages.items():
        for _ in range(3):  # warm caches and connections
            timed(client, url())
        samples, queries = [], set()
        for _ in range(N_REQUESTS):
            ms, n = timed(client, url())
            samples.append(ms)
            queries.add(n)
        p95 = pct(samples, 95)
        ok &= p95 <= 150
        q = "-".join(str(x) for x in sorted(queries)) if len(queries) > 1 else str(queries.pop())
        print(f"{name:<20} {statistics.median(samples):8.1f} {p95:8.1f} {max(samples):8.1f} {q:>8}")
    print("target p95 <= 150 ms:", "met" if ok else "NOT met")
    # The first read after an audit arrives ranks every version again (the window query over
    # all audits); the pages above reuse the ranking until then.
    from audit.reports.ratings import forget_ranking

    cold = []
    for _ in range(10):
        forget_ranking()
        cold.append(timed(client, reverse("home"))[0])
    print(f"team overview right after a new audit (ranking recomputed): p50 {statistics.median(cold):.1f} ms, "
          f"max {max(cold):.1f} ms")


if __name__ == "__main__":
    main()
