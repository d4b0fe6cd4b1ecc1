"""Energy boundaries on the pages in headless Chromium (issue 23): the report names the boundary of
its headline figures with device, host and facility beside it and what the grams rest on; compare
warns when a GPU audit's device figures share the energy axis with a CPU audit's."""
import sys

import pytest

from ..test_boundaries import _stored, fake_nvml
from .conftest import SCREENSHOTS
from .test_browser_reports import login

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.timeout(300)]


def test_report_and_compare_show_the_boundaries(browser_page, live_server, member, team, tmp_path, monkeypatch):
    cpu = _stored(team, tmp_path, pue=1.4)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml.make_nvml([fake_nvml.FakeGPU("GPU-a", energy_step_mj=5)]))
    gpu = _stored(team, tmp_path, pue=1.4, device="cuda")
    page = browser_page
    login(page, live_server, member)

    page.goto(f"{live_server.url}/audits/{cpu.pk}/")
    strip = page.locator("#energy-boundaries")
    strip.wait_for()
    assert strip.is_visible()
    text = strip.inner_text()
    assert "Energy boundary of the figures above: device" in text
    rows = [page.locator(f"#boundary-{name}") for name in ("device", "host", "facility")]
    assert all(r.is_visible() for r in rows)
    assert "headline" in rows[0].inner_text() and "measured" in rows[1].inner_text()
    assert "host × PUE 1.4" in page.locator("#co2e-basis").inner_text()
    page.screenshot(path=str(SCREENSHOTS / "report-boundaries.png"), full_page=True)

    page.goto(f"{live_server.url}/compare/?a={cpu.pk}&a={gpu.pk}")
    warning = page.locator("#compare-differences")
    warning.wait_for()
    assert "device figures that cover different parts" in warning.inner_text()
    assert page.console_errors == []
