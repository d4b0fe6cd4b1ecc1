"""No script from stored data reaches a browser: every response carries the
Content-Security-Policy (audit/csp.py), no page has inline script or inline event handlers
for it to forbid, and a stored URL becomes a link only when it is http(s)
(audit/templatetags/safeurl.py). The same audits in a real browser:
tests/integration/test_browser_xss.py."""
from html.parser import HTMLParser

import pytest
from django.urls import reverse

from audit.models import Audit
from audit.templatetags.safeurl import http_url

from .hostile_audit import JS_URL, PAYLOAD, hostile_audits

EXPECTED = {"script-src": "'self'", "object-src": "'none'", "base-uri": "'none'", "frame-ancestors": "'none'",
            "default-src": "'self'"}


def directives(response) -> dict:
    header = response.headers.get("Content-Security-Policy", "")
    return {part.split()[0]: " ".join(part.split()[1:]) for part in header.split(";") if part.strip()}


def assert_policy(response):
    got = directives(response)
    for name, value in EXPECTED.items():
        assert got.get(name) == value, (name, got)
    assert "'unsafe-inline'" not in got["script-src"] and "'unsafe-eval'" not in got["script-src"]


@pytest.mark.django_db
@pytest.mark.parametrize("method,url,kwargs", [
    ("get", "/login/", {}),
    ("get", "/", {}),  # a redirect to the login page
    ("get", "/no-such-page/", {}),
    ("get", "/api/v1/audits/", {}),  # 401
    ("get", "/api/v1/docs/", {}),
    ("get", "/api/v1/docs/?script=", {}),
    ("get", "/healthz", {}),
    ("post", "/api/v1/audits/", {"data": "[" * 100 + "]" * 100, "content_type": "application/json"}),  # 400
    ("get", "/audits/?status=%00", {}),  # 400 from the input checks
])
def test_every_response_carries_the_policy(client, method, url, kwargs):
    assert_policy(getattr(client, method)(url, **kwargs))


@pytest.mark.django_db
def test_pages_and_static_files_carry_the_policy(member_client, team):
    audit = hostile_audits(team)["first"]
    for url in (audit.get_absolute_url(), reverse("audit-list"), "/static/js/charts.js"):
        assert_policy(member_client.get(url))


class Markup(HTMLParser):
    """Every tag's attributes, and the text of each <script> with its type."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.attrs: list[tuple[str, str, str]] = []
        self.scripts: list[tuple[dict, str]] = []
        self._script = None

    def handle_starttag(self, tag, attrs):
        self.attrs += [(tag, name, value or "") for name, value in attrs]
        if tag == "script":
            self._script = (dict(attrs), "")

    def handle_data(self, data):
        if self._script is not None:
            self._script = (self._script[0], self._script[1] + data)

    def handle_endtag(self, tag):
        if tag == "script" and self._script is not None:
            self.scripts.append(self._script)
            self._script = None


def assert_runs_nothing_inline(html: str, where: str):
    page = Markup()
    page.feed(html)
    for attrs, text in page.scripts:
        if "src" in attrs:
            assert attrs["src"].startswith("/static/") and not text.strip(), (where, attrs)
        else:  # json_script: data, never run
            assert attrs.get("type") == "application/json", (where, attrs, text[:200])
    handlers = [(tag, name) for tag, name, _ in page.attrs if name.startswith("on")]
    assert handlers == [], (where, handlers)
    for tag, name, value in page.attrs:
        if name in ("href", "src", "action", "formaction", "xlink:href", "data"):
            scheme = value.strip().lower()
            assert not scheme.startswith(("javascript:", "data:", "vbscript:")), (where, tag, name, value)


@pytest.mark.django_db
def test_pages_with_hostile_results_hold_no_inline_script_and_no_script_url(client, lead, team):
    audits = hostile_audits(team)
    first, second = audits["first"], audits["second"]
    client.force_login(lead)
    asset = first.model_version.asset
    pages = {
        "report": first.get_absolute_url(),
        "report of the failed audit": audits["failed"].get_absolute_url(),
        "report of the running audit": audits["running"].get_absolute_url(),
        "progress": reverse("audit-progress", args=[audits["running"].pk]),
        "compare": f"{reverse('compare')}?a={first.pk}&a={second.pk}",
        "history": reverse("model-history", args=[asset.pk]),
        "model": asset.get_absolute_url(),
        "audits": reverse("audit-list"),
        "overview": reverse("home"),
        "reviews": reverse("review-queue"),
        "budgets": reverse("budget-list"),
    }
    for where, url in pages.items():
        response = client.get(url)
        assert response.status_code == 200, (where, response.status_code)
        html = response.content.decode()
        assert_runs_nothing_inline(html, where)
        assert "<img src=x onerror" not in html and "<svg onload" not in html, where
    report = client.get(first.get_absolute_url()).content.decode()
    # the hostile text is shown, as text: the checks above looked at pages that hold it
    assert "&lt;img src=x onerror=" in report
    assert "Carbon: " in report and ">source</a>" not in report  # the carbon line, without its javascript: link


@pytest.mark.django_db
def test_a_stored_web_address_is_still_a_link(member_client, team):
    audit = hostile_audits(team)["first"]
    url = "https://app.electricitymaps.com/zone/DE?a=1&b=2"
    Audit.objects.filter(pk=audit.pk).update(carbon={**audit.carbon, "source_url": url})
    page = member_client.get(audit.get_absolute_url()).content.decode()
    assert '<a href="https://app.electricitymaps.com/zone/DE?a=1&amp;b=2" rel="noopener noreferrer">source</a>' in page


@pytest.mark.parametrize("url", [
    JS_URL, " JavaScript:alert(1)", "java\tscript:alert(1)", "java\nscript:alert(1)", "\x01javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>", "vbscript:msgbox(1)", "//evil.example/x", "http:javascript:alert(1)",
    "/relative/path", "http://[::1", "", None, 7, PAYLOAD,
])
def test_only_web_addresses_become_links(url):
    assert http_url(url) == ""


@pytest.mark.parametrize("url", ["https://example.org/a?b=1", "http://example.org", "HTTPS://Example.org/x"])
def test_web_addresses_pass(url):
    assert http_url(url).lower() == url.lower()
