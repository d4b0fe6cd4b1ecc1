"""The pages in a real browser (Debian's headless Chromium driven by Playwright) against
a live server and a real worker: log in, upload, request an audit, watch the htmx
progress finish, read the report."""
import os
import shutil
from pathlib import Path

import pytest

from audit.models import Audit

from ..models import MLP_CONFIG, mlp_safetensors_bytes
from .conftest import IN_CI

pytestmark = [pytest.mark.integration, pytest.mark.browser, pytest.mark.timeout(300)]
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"


@pytest.fixture
def browser_page():
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail(f"Chromium not found at {CHROMIUM}; .ci/run installs Debian's chromium package")
        pytest.skip(f"Chromium not found at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls in the test are
    # still synchronous and safe here.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("console", lambda msg: msg.type == "error" and errors.append(msg.text))
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.console_errors = errors
        yield page
        browser.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


def test_upload_audit_and_report_in_the_browser(browser_page, live_server, member, start_worker, tmp_path):
    start_worker()
    page = browser_page
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", member.username)
    page.fill("#id_password", "pw-" + member.username)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")

    model_file = tmp_path / "digits.safetensors"
    model_file.write_bytes(mlp_safetensors_bytes(config=MLP_CONFIG))
    page.goto(f"{live_server.url}/models/upload/")
    page.fill("#id_name", "browser-mlp")
    page.set_input_files("#id_file", str(model_file))
    page.screenshot(path=str(SCREENSHOTS / "model-upload.png"), full_page=True)
    page.click("#model-upload-form button[type=submit]")
    page.wait_for_selector("text=Request an audit")
    page.screenshot(path=str(SCREENSHOTS / "model-detail.png"), full_page=True)

    page.fill("input[name=batch_sizes]", "1,4")
    page.click("text=Request audit")
    page.wait_for_selector("#audit-progress")
    page.screenshot(path=str(SCREENSHOTS / "audit-progress.png"), full_page=True)
    # htmx polls the progress partial; when the audit ends it stops and the page reloads.
    page.wait_for_selector("#report-table", timeout=180_000)
    audit = Audit.objects.get()
    assert audit.status == Audit.Status.SUCCEEDED
    page.screenshot(path=str(SCREENSHOTS / "audit-report.png"), full_page=True)
    text = page.inner_text("#report-table")
    assert "baseline" in text and audit.variants.get().measurements.first().energy_method in text
    assert page.locator("#fingerprint").count() == 1
    assert page.console_errors == []
