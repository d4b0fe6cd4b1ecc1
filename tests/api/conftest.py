import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from audit.services import audits as audit_services


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    """Users are made with passwords; the production hasher costs ~0.3 s each."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def no_dispatch(monkeypatch):
    """Audits requested through the API are recorded, not sent to a broker."""
    sent = []
    monkeypatch.setattr(audit_services, "_dispatch", lambda audit_id, queue: sent.append((audit_id, queue)))
    return sent


def token_client(user) -> APIClient:
    client = APIClient()
    if user is not None:
        token = Token.objects.create(user=user)
        client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def api(member):
    return token_client(member)


@pytest.fixture
def lead_api(lead):
    return token_client(lead)


@pytest.fixture(autouse=True)
def _live_cpu_worker(cpu_worker):
    """API audit requests go to live queues only; these tests have a cpu worker online."""
    return cpu_worker
