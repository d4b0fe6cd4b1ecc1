"""The deployment files keep what the security work relies on: nginx's body limit in step
with the upload limit, Redis's append-only file on a volume, bubblewrap installed and allowed
wherever a worker runs."""
import re
from pathlib import Path

import yaml
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_nginx_limits_bodies_to_the_upload_limit_and_sits_in_front_of_gunicorn():
    services = compose()["services"]
    proxy = services["proxy"]
    assert proxy["image"].startswith("nginx")
    assert "./deploy/nginx.conf:/etc/nginx/conf.d/default.conf:ro" in proxy["volumes"]
    assert "ports" not in services["web"]  # reached through the proxy only
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    size = re.search(r"client_max_body_size\s+(\d+)m;", conf)
    assert size, "client_max_body_size missing"
    limit = int(size.group(1)) * 1024 * 1024
    default_upload = 512 * 1024 * 1024
    assert default_upload <= limit <= default_upload + settings.UPLOAD_FORM_OVERHEAD_BYTES
    for directive in ("client_body_timeout", "client_header_timeout", "proxy_read_timeout", "send_timeout"):
        assert re.search(rf"{directive}\s+\d+s;", conf), directive
    assert "server web:8000;" in conf


def test_redis_keeps_queued_audits_across_restarts():
    redis = compose()["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(v.endswith(":/data") for v in redis["volumes"])
    assert "redisdata" in compose()["volumes"]


def test_bubblewrap_is_installed_and_allowed_wherever_a_worker_runs():
    assert "bubblewrap" in (ROOT / "Dockerfile").read_text()
    assert "bubblewrap" in (ROOT / ".ci" / "run").read_text()
    assert "bubblewrap" in (ROOT / "Makefile").read_text()
    services = compose()["services"]
    for name in ("worker-cpu", "worker-gpu"):
        assert "seccomp=unconfined" in services[name]["security_opt"], name
        assert services[name]["pids_limit"] > 0
        assert services[name].get("environment", {}).get("AUDIT_SANDBOX", "bwrap") == "bwrap"


def test_behind_compose_nginx_django_believes_exactly_one_proxy():
    services = compose()["services"]
    assert services["web"]["environment"]["AUDIT_TRUSTED_PROXY_COUNT"] == "1"
    # no other service serves HTTP: none believes a proxy
    assert all("AUDIT_TRUSTED_PROXY_COUNT" not in (s.get("environment") or {}) for n, s in services.items() if n != "web")
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    # nginx appends the peer it saw (the one entry Django believes) and sets the scheme itself
    assert re.search(r"proxy_set_header\s+X-Forwarded-For\s+\$proxy_add_x_forwarded_for;", conf)
    assert re.search(r"proxy_set_header\s+X-Forwarded-Proto\s+\$scheme;", conf)


def test_web_processes_share_their_throttle_counts_in_redis():
    env = compose()["x-app"]["environment"]
    cache, broker = env["CACHE_URL"], env["CELERY_BROKER_URL"]
    assert cache.startswith("redis://redis:6379/") and cache != broker  # never flushed with the queues
