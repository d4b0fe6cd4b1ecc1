import pytest

from audit.services import audits as services


@pytest.fixture
def no_dispatch(monkeypatch):
    """Audits requested in a test stay queued: no message goes to a broker."""
    monkeypatch.setattr(services, "_dispatch", lambda audit_id, queue: None)
