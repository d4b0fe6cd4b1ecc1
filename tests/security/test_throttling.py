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


# --- the client's address: only the proxies the deployment declares are believed -------------
NGINX = "172.18.0.5"  # the proxy's address as gunicorn sees it
ATTACKER, VICTIM = "203.0.113.66", "198.51.100.23"


def api_get_via(token: str, remote: str, forwarded: str | None = None):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    extra = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded is not None else {}
    return client.get("/api/v1/audits/", REMOTE_ADDR=remote, **extra)


def test_a_rotating_forwarded_for_does_not_escape_the_token_throttle_without_a_proxy(user, settings):
    assert settings.AUDIT_TRUSTED_PROXY_COUNT == 0  # the default: no proxy in front
    for i in range(10):
        assert api_get_via(f"{i:040x}", ATTACKER, forwarded=f"10.0.{i}.1").status_code == 401
    assert api_get_via("f" * 40, ATTACKER, forwarded="10.9.9.9").status_code == 429


def test_a_forged_forwarded_for_locks_out_no_victim_without_a_proxy(user, settings):
    good = Token.objects.create(user=user).key
    for i in range(12):
        api_get_via(f"{i:040x}", ATTACKER, forwarded=VICTIM)
    assert api_get_via(good, VICTIM).status_code == 200
    assert api_get_via(good, VICTIM, forwarded=ATTACKER).status_code == 200
    assert api_get_via(good, ATTACKER).status_code == 429


def test_behind_one_proxy_the_address_it_saw_is_the_client(user, settings):
    settings.AUDIT_TRUSTED_PROXY_COUNT = 1
    good = Token.objects.create(user=user).key
    # nginx appends the address it saw; whatever the client wrote before it is ignored
    for i in range(10):
        forged = f"10.0.{i}.1, {VICTIM}"  # rotating and naming the victim at once
        assert api_get_via(f"{i:040x}", NGINX, forwarded=f"{forged}, {ATTACKER}").status_code == 401
    assert api_get_via(good, NGINX, forwarded=f"{VICTIM}, {ATTACKER}").status_code == 429
    # the victim behind the same proxy is not locked out, nor is everyone else behind it
    assert api_get_via(good, NGINX, forwarded=VICTIM).status_code == 200
    assert api_get_via(good, NGINX, forwarded=f"{ATTACKER}, 192.0.2.44").status_code == 200
    # garbage where the proxy's entry should be: the proxy's own address, not the text
    assert api_get_via(good, NGINX, forwarded="not-an-address").status_code == 200


def test_login_lockout_keys_on_the_same_address(client, user, settings):
    def attempt(password, remote, forwarded):
        return client.__class__().post(reverse("login"), {"username": user.username, "password": password},
                                       REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)

    # no proxy declared: a rotating forged header does not escape the lockout
    for i in range(4):
        assert attempt("wrong", ATTACKER, f"10.0.{i}.1").status_code == 200
    assert attempt("wrong", ATTACKER, "10.0.9.1").status_code == 429
    assert attempt(PASSWORD, VICTIM, ATTACKER).status_code == 302  # naming the attacker locks nobody
    # one proxy declared: the address nginx appended is the one counted
    settings.AUDIT_TRUSTED_PROXY_COUNT = 1
    for i in range(5):
        attempt("wrong", NGINX, f"{VICTIM}, 192.0.2.{i}, 198.18.0.7")
    assert attempt(PASSWORD, NGINX, "198.18.0.7").status_code == 429
    assert attempt(PASSWORD, NGINX, VICTIM).status_code == 302


def test_failures_age_out_after_the_period_and_retry_after_says_when(user, monkeypatch):
    from audit.api.throttling import FailedTokenThrottle

    clock = [1_000_020.0]
    monkeypatch.setattr(FailedTokenThrottle, "timer", lambda self: clock[0])
    good = Token.objects.create(user=user).key
    for i in range(10):
        api_get(f"{i:040x}", "203.0.113.7")
        clock[0] += 1.0  # one guess a second
    refused = api_get(good, "203.0.113.7")
    assert refused.status_code == 429
    assert 49 <= int(refused["Retry-After"]) <= 51  # the first guess leaves the minute in 50 s
    clock[0] += 51
    assert api_get(good, "203.0.113.7").status_code == 200
