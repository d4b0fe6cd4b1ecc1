"""Password logins (django-axes) and API tokens (audit/api/throttling.py) are throttled."""
import pytest
from django.core.cache import cache
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db
PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _clean_counts():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def user(member):
    member.set_password(PASSWORD)
    member.save()
    return member


def login(client, username, password, ip="203.0.113.7"):
    return client.post(reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=ip)


def test_login_is_locked_after_repeated_failures(client, user, settings):
    assert settings.AXES_FAILURE_LIMIT == 5
    for _ in range(4):
        response = login(client, user.username, "wrong")
        assert response.status_code == 200  # the form again, with its error
    assert login(client, user.username, "wrong").status_code == 429  # the fifth failure locks out
    # locked: even the right password is refused now, from that address
    locked = login(client, user.username, PASSWORD)
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session
    # the user can still log in from elsewhere; the lock is per user name and address
    other = login(client.__class__(), user.username, PASSWORD, ip="198.51.100.9")
    assert other.status_code == 302


def test_a_successful_login_resets_the_count(client, user):
    for _ in range(4):
        login(client, user.username, "wrong")
    assert login(client, user.username, PASSWORD).status_code == 302
    client.logout()
    for _ in range(4):
        assert login(client, user.username, "wrong").status_code == 200
    assert login(client, user.username, PASSWORD).status_code == 302


def api_get(token: str, ip: str):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client.get("/api/v1/audits/", REMOTE_ADDR=ip)


def test_token_guessing_is_throttled(user):
    good = Token.objects.create(user=user).key
    assert api_get(good, "203.0.113.7").status_code == 200
    for i in range(10):
        assert api_get(f"{i:040x}", "203.0.113.7").status_code == 401
    refused = api_get("f" * 40, "203.0.113.7")
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
    assert "Too many failed token attempts" in refused.json()["detail"]
    # from that client even a valid token waits: guessing learns nothing
    assert api_get(good, "203.0.113.7").status_code == 429
    # other clients are not affected
    assert api_get(good, "198.51.100.9").status_code == 200


def test_valid_tokens_are_not_counted(user):
    good = Token.objects.create(user=user).key
    for _ in range(30):
        assert api_get(good, "203.0.113.7").status_code == 200
