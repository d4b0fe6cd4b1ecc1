"""Script stored in a result runs nothing in a real browser (headless Chromium, as
test_browser_reports.py drives it): an audit whose every free-text field holds
``<img onerror>``, ``<script>`` and ``javascript:`` payloads, and whose carbon source URL is a
``javascript:`` URL, is opened on every page that shows it; the links are clicked; nothing runs,
no dialog opens, and every page carries the Content-Security-Policy that would stop a payload
the templates let through."""
import pytest

from ..security.hostile_audit import hostile_audits
from .test_browser_reports import assert_charts_drawn, login

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.timeout(300)]

# Before any page script: count CSP violations, so the test sees what the policy stopped.
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__violations.push(e.violatedDirective + " " + (e.blockedURI || "inline"));
});
"""


def assert_nothing_ran(page, dialogs, where):
    assert page.evaluate("typeof window.__xss") == "undefined", where
    assert dialogs == [], (where, dialogs)


def test_hostile_results_run_nothing_in_the_browser(browser_page, live_server, lead, team, transactional_db):
    page = browser_page
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.add_init_script(RECORD_VIOLATIONS)
    audits = hostile_audits(team)
    first, second, running = audits["first"], audits["second"], audits["running"]
    login(page, live_server, lead)
    asset = first.model_version.asset
    pages = {
        "report": first.get_absolute_url(),
        "compare": f"/compare/?a={first.pk}&a={second.pk}",
        "history": f"/models/{asset.pk}/history/",
        "model": asset.get_absolute_url(),
        "running audit": running.get_absolute_url(),
        "failed audit": audits["failed"].get_absolute_url(),
        "audits": "/audits/",
        "overview": "/",
        "reviews": "/reviews/",
        "budgets": "/budgets/",
    }
    for where, path in pages.items():
        response = page.goto(f"{live_server.url}{path}")
        assert response.status == 200, where
        policy = response.headers.get("content-security-policy", "")
        assert "script-src 'self'" in policy and "object-src 'none'" in policy, (where, policy)
        page.wait_for_load_state("load")
        assert page.locator("a[href^='javascript:' i]").count() == 0, where
        # every link on the page that stays on it (anchors, "Print / PDF" aside) is clicked
        for link in page.locator("main a[href^='#']:not([data-print])").all():
            link.click()
        assert_nothing_ran(page, dialogs, where)
        # the page's own scripts work under the policy: nothing of theirs was refused
        assert page.evaluate("window.__violations") == [], (where, page.evaluate("window.__violations"))
    # the report drew its charts and shows the hostile text as text
    page.goto(f"{live_server.url}{first.get_absolute_url()}")
    assert_charts_drawn(page, ["chart-tradeoff"])
    assert "<img src=x onerror=" in page.inner_text("main")
    assert page.locator("a:text-is('source')").count() == 0  # the javascript: carbon source is no link
    # The second wall: a javascript: link that did reach the page is refused by the policy.
    page.evaluate("""() => {
        const a = document.createElement('a');
        a.id = 'planted'; a.href = 'javascript:window.__xss=7;alert(7)'; a.textContent = 'planted';
        document.querySelector('main').appendChild(a);
    }""")
    page.click("#planted")
    page.wait_for_function("() => window.__violations.length > 0", timeout=5_000)
    assert_nothing_ran(page, dialogs, "planted javascript: link")
    assert any(v.startswith("script-src") for v in page.evaluate("window.__violations"))
    # the progress partial of the running audit, as htmx swaps it in, runs nothing either
    page.goto(f"{live_server.url}{running.get_absolute_url()}")
    page.wait_for_timeout(2_500)  # two polls
    assert_nothing_ran(page, dialogs, "progress polls")
    assert page.evaluate("window.__violations") == []


def test_api_docs_admin_and_browsable_api_work_under_the_policy(browser_page, live_server, lead, transactional_db):
    """The pages the project does not template itself still run under the policy: Swagger UI (its
    start-up script served as a file), the admin's login and DRF's browsable API."""
    page = browser_page
    page.add_init_script(RECORD_VIOLATIONS)
    response = page.goto(f"{live_server.url}/api/v1/docs/")
    assert "script-src 'self'" in response.headers.get("content-security-policy", "")
    page.wait_for_selector(".swagger-ui .info .title", timeout=20_000)
    assert "Energy Audit API" in page.inner_text(".swagger-ui .info .title")
    assert page.evaluate("window.__violations") == []
    page.goto(f"{live_server.url}/admin/login/")
    assert page.locator("#id_username").count() == 1
    assert page.evaluate("window.__violations") == []
    login(page, live_server, lead)
    page.goto(f"{live_server.url}/api/v1/audits/?format=api")
    page.wait_for_selector(".response-info", timeout=10_000)
    assert page.evaluate("window.__violations") == []
