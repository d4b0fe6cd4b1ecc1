import os
import uuid

import pytest
from django.contrib.auth import get_user_model

from audit.models import Membership, Team

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture(autouse=True)
def _storage(settings, tmp_path):
    """Each test stores uploads in its own folder, so 'no file left behind' can be checked."""
    settings.STORAGE_ROOT = tmp_path / "storage"
    settings.MEDIA_ROOT = settings.STORAGE_ROOT
    settings.STORAGE_ROOT.mkdir()
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    return settings.STORAGE_ROOT


@pytest.fixture(autouse=True)
def _own_cache(settings):
    """Each test counts throttles in a cache of its own, even where the settings name the
    broker's Redis (tests/security/test_throttling.py checks the shared Redis cache itself)."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                   "LOCATION": f"test-{uuid.uuid4().hex}"}}


def stored_files(root) -> list:
    return [p for p in root.rglob("*") if p.is_file()]


@pytest.fixture
def team(db):
    return Team.objects.create(name="Vision Lab", slug="vision-lab")


@pytest.fixture
def other_team(db):
    return Team.objects.create(name="Other Lab", slug="other-lab")


def make_user(username: str, team: Team, role: str = Membership.Role.MEMBER):
    user = get_user_model().objects.create_user(username=username, password="pw-" + username)
    Membership.objects.create(user=user, team=team, role=role)
    return user


@pytest.fixture
def member(team):
    return make_user("mia", team)


@pytest.fixture
def lead(team):
    return make_user("lee", team, Membership.Role.LEAD)


@pytest.fixture
def outsider(other_team):
    return make_user("otto", other_team)


@pytest.fixture
def member_client(client, member):
    client.force_login(member)
    return client


@pytest.fixture
def cpu_worker(db):
    """A live worker serving the cpu queue (its row, as a worker registers itself on start)."""
    from audit.services.workers import worker_node_register

    return worker_node_register(hostname="celery@test-cpu", queue="cpu", device="cpu",
                                fingerprint={"cpu": {"model": "Test CPU", "logical_cores": 2}})
