"""Issue 21 in headless Chromium: the report leads with "v7 vs v6 (approved): ... costs more" on
its first screen, and the history draws the chain of paired ratios (plotly, no console error)."""
import pytest

from audit.models import Audit
from audit.services import audits as services

from ..api.helpers import reference_row, reference_section, result_with_reference
from ..factories import make_audit, make_version
from .conftest import SCREENSHOTS
from .test_browser_reports import assert_charts_drawn, login

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.timeout(300)]


def compared(team, version, reference_version, **row) -> Audit:
    audit = make_audit(team, model_version=version, reference_version=reference_version)
    claim = services.audit_claim(audit_id=audit.pk, hostname="w1")
    label = f"{reference_version.label} (approved)" if row.pop("approved", True) else reference_version.label
    doc = result_with_reference(reference_section([reference_row(1, **row)], label=label))
    services.audit_store_result(audit_id=audit.pk, attempt=claim.attempt, result=doc)
    return Audit.objects.get(pk=audit.pk)


def test_the_release_comparison_leads_the_report_and_the_history_draws_its_chain(browser_page, live_server, member,
                                                                                team, transactional_db):
    page = browser_page
    v5, v6, v7 = (make_version(team, name="release-mlp", label=label) for label in ("v5", "v6", "v7"))
    compared(team, v6, v5, energy=(0.9, 0.85, 0.95), verdict="costs less", approved=False)
    audit = compared(team, v7, v6)
    login(page, live_server, member)
    page.goto(f"{live_server.url}/audits/{audit.pk}/")
    lead = page.inner_text("#release")
    assert "v7 vs v6 (approved): energy ×1.12 [1.05, 1.19], latency ×1.03 [0.98, 1.08]: costs more" in lead
    box = page.locator("#release").bounding_box()
    assert box is not None and box["y"] < page.viewport_size["height"]  # on the first screen
    page.screenshot(path=str(SCREENSHOTS / "release-report.png"), full_page=True)
    page.goto(f"{live_server.url}/models/{v7.asset_id}/history/")
    assert_charts_drawn(page, ["chart-release-energy", "chart-release-latency"])
    assert page.locator("#history-table .paired-mark").count() == 2
    page.locator("#chart-release-energy").screenshot(path=str(SCREENSHOTS / "release-chain.png"))
    assert page.console_errors == []
