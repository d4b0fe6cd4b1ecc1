"""The production environment documented in README.md passes Django's deploy checks."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PRODUCTION_ENV = {
    "SECRET_KEY": "x7Qp0-production-secret-of-sufficient-length-and-variety-9fK2#mZ",
    "DEBUG": "false",
    "ALLOWED_HOSTS": "audit.example.org",
    "CSRF_TRUSTED_ORIGINS": "https://audit.example.org",
    "SECURE_SSL_REDIRECT": "true",
    "SESSION_COOKIE_SECURE": "true",
    "CSRF_COOKIE_SECURE": "true",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "SECURE_HSTS_PRELOAD": "true",
}


def run_manage(*args, env_extra: dict) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in PRODUCTION_ENV}
    env.update(env_extra)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)


def test_documented_production_settings_pass_check_deploy():
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env_extra=PRODUCTION_ENV)
    assert result.returncode == 0, result.stdout + result.stderr


def test_development_defaults_do_not_pass_check_deploy():
    # The insecure default key must never pass for production.
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env_extra={"DEBUG": "false"})
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stdout + result.stderr


def test_readme_documents_every_production_variable():
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in PRODUCTION_ENV if name not in readme]
    assert not missing, f"README.md does not document {missing}"
