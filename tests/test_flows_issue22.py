"""Issue 22, "Flows": what a newcomer walking through the pages ran into.

- a refused approval says why beside the buttons (the page opens there), not at the top;
- review notifications reach the demo users (they have addresses), and a decision nobody can be
  told of is logged;
- the stage text names the upload, never the server's storage path, and a claimed audit's
  header names its worker's hardware;
- the dataset menu offers the datasets that fit the model and says why the others are hidden;
- the audits list shows the review status."""
import logging
import re

import pytest
from django.urls import reverse

from audit import demo
from audit.models import Audit
from audit.services import audits as services
from audit.services.reviews import review_create

from .api.helpers import finished_audit
from .integration.conftest import browser_page  # noqa: F401  (the browser test's fixture)
from .models import mlp_safetensors_bytes

pytestmark = pytest.mark.django_db

ACK_WORDS = "Before approving this audit, acknowledge that"


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def graded_d(team, **fields) -> Audit:
    audit = finished_audit(team, **fields)
    Audit.objects.filter(pk=audit.pk).update(quality_grade="D", quality_reasons=["D: the baseline moved by 58%"])
    audit.refresh_from_db()
    return audit


def _review_form(html: str) -> str:
    match = re.search(r'<form[^>]*id="review-form".*?</form>', html, re.S)
    assert match, "the page has no review form"
    return match.group(0)


def _top_messages(html: str) -> str:
    match = re.search(r'<ul class="messages">.*?</ul>', html, re.S)
    return match.group(0) if match else ""


# --- 1. a refused approval is explained where the button is ---------------------------------


def test_refused_approval_opens_at_the_form_with_the_reason_above_the_buttons(client, lead, team):
    audit = graded_d(team)
    client.force_login(lead)
    response = client.post(reverse("audit-review", args=[audit.pk]),
                           {"decision": "approved", "comment": "Looks fine to me."})
    assert response.status_code == 302
    assert response["Location"] == audit.get_absolute_url() + "#review-form"
    assert Audit.objects.get(pk=audit.pk).review_status == "pending"  # nothing recorded

    html = client.get(response["Location"]).content.decode()
    form = _review_form(html)
    error_at = form.find('id="review-error"')
    assert error_at != -1, "the reason is not in the review form"
    assert error_at < form.find('value="approved"')  # above the buttons
    error = re.search(r'id="review-error".*?</ul>', form, re.S).group(0)
    assert "Not recorded" in error and ACK_WORDS in error and "quality grade is D" in error
    assert ">Looks fine to me.</textarea>" in form  # what was typed is kept
    assert ACK_WORDS not in _top_messages(html)  # not at the top, out of view

    # Shown once: the next visit is a fresh form.
    again = _review_form(client.get(audit.get_absolute_url()).content.decode())
    assert 'id="review-error"' not in again and "Looks fine to me." not in again

    # Ticked, the same approval goes through and the panel says so.
    response = client.post(reverse("audit-review", args=[audit.pk]),
                           {"decision": "approved", "acknowledge_low_quality": "on"}, follow=True)
    assert Audit.objects.get(pk=audit.pk).review_status == "approved"
    assert "Approval recorded." in response.content.decode()


def test_refused_change_request_without_a_comment_is_explained_at_the_form(client, lead, team):
    audit = finished_audit(team)
    client.force_login(lead)
    response = client.post(reverse("audit-review", args=[audit.pk]), {"decision": "changes-requested"}, follow=True)
    form = _review_form(response.content.decode())
    assert "Not recorded: Say what should change." in form


def test_a_refusal_for_one_audit_is_not_shown_on_another(client, lead, team):
    first, second = finished_audit(team), graded_d(team)
    client.force_login(lead)
    client.post(reverse("audit-review", args=[second.pk]), {"decision": "approved"})
    assert 'id="review-error"' not in client.get(first.get_absolute_url()).content.decode()
    assert 'id="review-error"' in client.get(second.get_absolute_url()).content.decode()


@pytest.mark.integration
@pytest.mark.browser
@pytest.mark.timeout(180)
def test_refused_approval_reason_is_in_view_after_the_click(browser_page, live_server, lead, team, transactional_db):
    from .integration.test_browser_reports import login
    from .reports.helpers import stored_engine_audit

    audit = stored_engine_audit(team)  # a full report: the review form is far below the first screen
    Audit.objects.filter(pk=audit.pk).update(quality_grade="D", quality_reasons=["D: the baseline moved by 58%"])
    page = browser_page
    login(page, live_server, lead)
    page.goto(f"{live_server.url}{audit.get_absolute_url()}")
    page.fill("#review-comment", "Ship it.")
    page.click('#review-form button[value="approved"]')
    page.wait_for_selector("#review-error")
    box = page.locator("#review-error").bounding_box()
    height = page.viewport_size["height"]
    assert box is not None and 0 <= box["y"] and box["y"] + box["height"] <= height, box
    button = page.locator('#review-form button[value="approved"]').bounding_box()
    assert 0 <= button["y"] <= height  # and the button to press again
    assert page.evaluate("() => window.scrollY") > 0  # the form is not on the first screen
    assert ACK_WORDS in page.inner_text("#review-error")
    assert page.input_value("#review-comment") == "Ship it."
    assert page.console_errors == []


# --- 2. review emails ---------------------------------------------------------------------------


def _demo(monkeypatch, capture):
    monkeypatch.setattr(demo, "train_digits_mlp", lambda: (mlp_safetensors_bytes(), 0.9))
    monkeypatch.setattr(services, "_dispatch", lambda audit_id, queue: None)
    with capture(execute=True):
        return demo.ensure_demo(log=lambda *_: None)


def test_demo_users_have_addresses_and_a_decision_on_the_demo_audit_is_printed_by_the_console_backend(
        monkeypatch, settings, capsys, django_capture_on_commit_callbacks):
    from django.contrib.auth import get_user_model

    audit = _demo(monkeypatch, django_capture_on_commit_callbacks)
    users = get_user_model().objects
    lead = users.get(username=demo.DEMO_USERS["lead"][0])
    member = users.get(username=demo.DEMO_USERS["member"][0])
    assert lead.email == "demo-lead@example.org" and member.email == "demo-member@example.org"
    assert audit.requested_by == member

    claim = services.audit_claim(audit_id=audit.pk, hostname="w1")
    from .factories import result_doc

    services.audit_store_result(audit_id=audit.pk, attempt=claim.attempt, result=result_doc())
    audit.refresh_from_db()
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"  # what make run uses
    capsys.readouterr()
    with django_capture_on_commit_callbacks(execute=True):
        review_create(user=lead, audit=audit, decision="changes-requested", comment="Batch 64 too, please.")
    printed = capsys.readouterr().out
    assert "To: demo-member@example.org" in printed
    assert "changes requested" in printed and "Batch 64 too, please." in printed


def test_demo_users_made_before_addresses_get_theirs_and_keep_their_password(
        monkeypatch, django_capture_on_commit_callbacks):
    from django.contrib.auth import get_user_model

    old = get_user_model().objects.create_user(username=demo.DEMO_USERS["lead"][0], password="kept-password")
    _demo(monkeypatch, django_capture_on_commit_callbacks)
    old.refresh_from_db()
    assert old.email == "demo-lead@example.org" and old.check_password("kept-password")


def test_a_decision_whose_requester_has_no_address_is_logged(lead, member, team, caplog,
                                                             django_capture_on_commit_callbacks, mailoutbox):
    assert member.email == ""
    audit = finished_audit(team, user=member)
    with caplog.at_level(logging.WARNING, logger="audit.services.reviews"):
        with django_capture_on_commit_callbacks(execute=True):
            review = review_create(user=lead, audit=audit, decision="approved")
    assert mailoutbox == []
    (record,) = [r for r in caplog.records if r.name == "audit.services.reviews"]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (f"Review {review.pk} of audit #{audit.pk}: no email sent, "
                                   f"its requester {member.username} has no email address")
