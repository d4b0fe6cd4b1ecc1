"""Throttle counts are shared by every web process when the broker (or CACHE_URL) is Redis:
failures counted by two other processes add up to the limit in this one. Needs the Redis that
.ci/run provides (the broker's URL names it); skips without it locally, fails in CI."""
import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.test import RequestFactory
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from audit.api.throttling import FailedTokenThrottle

from ..conftest import IN_CI

ROOT = Path(__file__).resolve().parents[2]
# a day's period: the failures of a slow run (under load) do not age out before they are read
DAILY = "10/day"
RECORD_FAILURES = """
import json, sys
import django
django.setup()
from django.conf import settings
from django.test import RequestFactory
from audit.api.throttling import FailedTokenThrottle
for _ in range(int(sys.argv[2])):
    FailedTokenThrottle().record_failure(RequestFactory().get("/api/v1/audits/", REMOTE_ADDR=sys.argv[1]))
print(json.dumps(settings.CACHES["default"]))
"""


@pytest.fixture(autouse=True)
def _daily_windows(monkeypatch):
    monkeypatch.setattr(FailedTokenThrottle, "THROTTLE_RATES", {"token_failures": DAILY})


@pytest.fixture
def redis_url():
    url = settings.CELERY_BROKER_URL
    if not url.startswith("redis://"):
        if IN_CI:
            pytest.fail("CELERY_BROKER_URL must name Redis in CI (.ci/run)")
        pytest.skip("needs CELERY_BROKER_URL=redis://...")
    return url


def web_process_settings(env_overrides: dict) -> dict:
    """The cache a fresh process configures from its environment (CACHE_URL unset: the broker's)."""
    env = {k: v for k, v in os.environ.items() if k != "CACHE_URL"}
    env.update(DJANGO_SETTINGS_MODULE="audit.settings", **env_overrides)
    out = subprocess.run([sys.executable, "-c", "import django; django.setup(); from django.conf import settings; "
                          "import json; print(json.dumps(settings.CACHES['default']))"],
                         cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def record_failures_in_another_process(ip: str, n: int, broker: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "CACHE_URL"}
    env.update(DJANGO_SETTINGS_MODULE="audit.settings", CELERY_BROKER_URL=broker, API_TOKEN_FAILURE_RATE=DAILY)
    out = subprocess.run([sys.executable, "-c", RECORD_FAILURES, ip, str(n)], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_cache_is_the_brokers_redis_unless_named():
    broker = "redis://10.1.2.3:6379/4"
    assert web_process_settings({"CELERY_BROKER_URL": broker})["LOCATION"] == broker
    named = web_process_settings({"CELERY_BROKER_URL": broker, "CACHE_URL": "redis://cache:6379/1"})
    assert named["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert named["LOCATION"] == "redis://cache:6379/1"
    demo = web_process_settings({"CELERY_BROKER_URL": "filesystem://"})
    assert demo["BACKEND"] == "django.core.cache.backends.locmem.LocMemCache"


@pytest.mark.django_db
def test_failures_counted_by_two_processes_add_up(member, redis_url, settings):
    ip = f"198.18.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    first = record_failures_in_another_process(ip, 5, redis_url)
    second = record_failures_in_another_process(ip, 5, redis_url)
    assert first == second and first["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    settings.CACHES = {"default": first}  # this process, configured as the other two were
    try:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=member).key}")
        assert client.get("/api/v1/audits/", REMOTE_ADDR=ip).status_code == 429  # 5 + 5 = the limit of 10
        assert client.get("/api/v1/audits/", REMOTE_ADDR="198.19.0.1").status_code == 200
    finally:
        _forget(ip)


def test_concurrent_failures_are_all_counted(redis_url, settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_url,
                                   "KEY_PREFIX": "energy-audit"}}
    ip = f"198.18.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    request = RequestFactory().get("/api/v1/audits/", REMOTE_ADDR=ip)
    threads_n, each = 8, 5
    start = threading.Barrier(threads_n)

    def guess():
        start.wait()
        for _ in range(each):
            FailedTokenThrottle().record_failure(request)

    threads = [threading.Thread(target=guess) for _ in range(threads_n)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert FailedTokenThrottle().failures(request) == threads_n * each
    finally:
        _forget(ip)


def _forget(ip: str) -> None:
    from django.core.cache import cache

    slices = FailedTokenThrottle()._slices(RequestFactory().get("/", REMOTE_ADDR=ip))
    cache.delete_many([key for key, _ in slices])
