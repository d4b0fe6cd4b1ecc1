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


# --- 4. the stage text names the upload; the header names the claiming worker's hardware ------


def test_the_engine_says_loading_the_uploads_name_not_its_path(settings):
    from workers.engine.profile import profile_model

    from .engine import models as m

    folder = settings.STORAGE_ROOT / "models" / "1" / "ab" / ("ab" + "0" * 62)
    folder.mkdir(parents=True)
    path = m.save_safetensors(folder / "gpt2-rand.safetensors", "mlp", m.MLP_CONFIG)
    events = []
    profile_model(path, batch_sizes=(1,), options=dict(m.FAST_OPTIONS, threads=1), progress=events.append)
    assert events[0]["message"] == "loading gpt2-rand.safetensors"
    root = str(settings.STORAGE_ROOT)
    assert not [e for e in events if root in str(e)]


def _stored_path(settings, name="gpt2-rand.zip") -> str:
    return f"{settings.STORAGE_ROOT}/models/1/ab/ab{'0' * 62}/{name}"


def test_nothing_shown_for_an_audit_names_the_storage_root(client, member, team, settings):
    """Whatever the worker or the engine puts in a message (a stage, an error, a warning), the
    page, the API and the export name the file, never where the server keeps it."""
    from rest_framework.test import APIClient

    from .factories import make_audit, result_doc

    root = str(settings.STORAGE_ROOT)
    path = _stored_path(settings)
    running = make_audit(team, requested_by=member)
    claim = services.audit_claim(audit_id=running.pk, hostname="w1")
    services.audit_progress(audit_id=running.pk, attempt=claim.attempt, stage="loading", percent=1.0,
                            message=f"loading {path}")
    running.refresh_from_db()
    assert running.progress_message == "loading gpt2-rand.zip"

    failed = make_audit(team, requested_by=member)
    claim = services.audit_claim(audit_id=failed.pk, hostname="w1")
    services.audit_fail(audit_id=failed.pk, attempt=claim.attempt,
                        error=f"LoadError: cannot open '{path}': not a zip file ({root}/models/1)")
    failed.refresh_from_db()
    assert failed.error == "LoadError: cannot open 'gpt2-rand.zip': not a zip file (1)"

    done = make_audit(team, requested_by=member)
    claim = services.audit_claim(audit_id=done.pk, hostname="w1")
    doc = result_doc()
    doc["warnings"] = [f"the dataset {_stored_path(settings, 'digits.npz')} has 12 rows"]
    doc["variants"].append({**doc["variants"][0], "recipe": "int8-static", "status": "failed", "measurements": [],
                            "error": f"RuntimeError: {path}/model.onnx: no such file"})
    services.audit_store_result(audit_id=done.pk, attempt=claim.attempt, result=doc)
    done.refresh_from_db()
    assert done.warnings == ["the dataset digits.npz has 12 rows"]
    assert done.variants.get(recipe="int8-static").error == "RuntimeError: model.onnx: no such file"

    client.force_login(member)
    api = APIClient()
    api.force_authenticate(member)
    shown = []
    for audit in (running, failed, done):
        shown.append(client.get(audit.get_absolute_url()).content.decode())
        shown.append(client.get(reverse("audit-progress", args=[audit.pk])).content.decode())
        shown.append(api.get(f"/api/v1/audits/{audit.pk}/").content.decode())
        shown.append(api.get(f"/api/v1/audits/{audit.pk}/status/").content.decode())
    shown.append(client.get(reverse("audit-list")).content.decode())
    shown.append(b"".join(api.get("/api/v1/audits/export.csv").streaming_content).decode())
    assert "loading gpt2-rand.zip" in shown[0] and "gpt2-rand.zip" in shown[4]
    for text in shown:
        assert root not in text
        assert root.replace("/", "\\/") not in text  # JSON may escape slashes


def test_a_claimed_audits_header_names_the_workers_hardware(client, member, team, cpu_worker):
    from .factories import make_audit

    audit = make_audit(team, requested_by=member)
    client.force_login(member)
    page = client.get(audit.get_absolute_url()).content.decode()
    assert re.search(r'id="report-hardware">not known until a worker claims the audit<', page)

    services.audit_claim(audit_id=audit.pk, hostname=cpu_worker.hostname)
    # The open page polls the progress fragment, which now brings the header's hardware along.
    fragment = client.get(reverse("audit-progress", args=[audit.pk])).content.decode()
    oob = re.search(r'<span id="report-hardware" hx-swap-oob="true">([^<]*)</span>', fragment)
    assert oob and "Test CPU" in oob.group(1)
    page = client.get(audit.get_absolute_url()).content.decode()
    header = re.search(r'id="report-hardware">([^<]*)<', page).group(1)
    assert "Test CPU" in header and "not known" not in page


@pytest.mark.integration
@pytest.mark.browser
@pytest.mark.timeout(120)
def test_an_open_pages_header_follows_the_claim(browser_page, live_server, member, team, cpu_worker, transactional_db):
    from .factories import make_audit
    from .integration.test_browser_reports import login

    audit = make_audit(team, requested_by=member)
    page = browser_page
    login(page, live_server, member)
    page.goto(f"{live_server.url}{audit.get_absolute_url()}")
    assert page.inner_text("#report-hardware") == "not known until a worker claims the audit"
    services.audit_claim(audit_id=audit.pk, hostname=cpu_worker.hostname)
    page.wait_for_function("() => document.querySelector('#report-hardware').textContent.includes('Test CPU')",
                           timeout=10_000)
    assert page.locator("#report-hardware").count() == 1  # replaced, not added
    assert page.console_errors == []


# --- 5. the dataset menu offers what fits the model ------------------------------------------------


def _npz(**arrays) -> bytes:
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


DIGITS_NPZ = {"inputs": [[0.0] * 64, [1.0] * 64], "labels": [3, 7]}
TOKEN_IDS_NPZ = {"input_ids": [[15496, 995]], "labels": [1]}


def _dataset(team, name, *, fmt, task, arrays=None):
    """A dataset row as an upload makes it (an NPZ with real arrays: the menu reads their names)."""
    import hashlib

    from django.core.files.base import ContentFile

    from audit.models import Dataset

    content = _npz(**arrays) if fmt == "npz" else b"text,label\nhello,1\nworld,0\n"
    dataset = Dataset(team=team, name=name, format=fmt, task=task, n_samples=2, size_bytes=len(content),
                      sha256=hashlib.sha256(content + name.encode()).hexdigest())
    dataset.file.save(f"{name}.{fmt}", ContentFile(content), save=False)
    dataset.save()
    return dataset


def _text_lm(team):
    from .factories import make_version

    version = make_version(team, name="gpt2-rand")
    version.asset.task = "language-modeling"
    version.asset.save()
    type(version).objects.filter(pk=version.pk).update(format="hf")
    version.refresh_from_db()
    return version


def _menu(html: str, version) -> tuple[list[str], str]:
    select = re.search(rf'<select name="dataset" id="id_dataset_{version.pk}".*?</select>', html, re.S).group(0)
    offered = re.findall(r'<option value="\d+"[^>]*>([^ <]+)', select)
    hidden = re.search(rf'<details[^>]*id="dataset-hidden-{version.pk}".*?</details>', html, re.S)
    return offered, hidden.group(0) if hidden else ""


def test_the_dataset_menu_offers_a_language_model_text_and_says_why_the_digits_are_hidden(client, member, team):
    from .factories import make_version

    lm = _text_lm(team)
    mlp = make_version(team)  # digits-mlp: bare safetensors weights, a classifier
    _dataset(team, "digits-test", fmt="npz", task="classification", arrays=DIGITS_NPZ)
    _dataset(team, "wiki-sample", fmt="text", task="language-modeling")
    _dataset(team, "reviews", fmt="csv", task="text-classification")
    _dataset(team, "token-ids", fmt="npz", task="other", arrays=TOKEN_IDS_NPZ)
    client.force_login(member)

    offered, hidden = _menu(client.get(reverse("model-detail", args=[lm.asset_id])).content.decode(), lm)
    assert offered == ["token-ids", "wiki-sample"]
    assert "2 datasets not offered" in hidden
    assert "digits-test: a classification dataset; this model&#x27;s task is language modelling." in hidden
    assert "reviews: a text classification dataset; this model&#x27;s task is language modelling." in hidden

    offered, hidden = _menu(client.get(reverse("model-detail", args=[mlp.asset_id])).content.decode(), mlp)
    assert offered == ["digits-test", "token-ids"]
    assert "wiki-sample: a language modelling dataset; this model&#x27;s task is classification." in hidden
    assert ("reviews: CSV text is tokenised by the model&#x27;s own tokenizer, which only a Hugging Face model "
            "brings (this version is safetensors).") in hidden


def test_a_language_model_uploaded_as_a_classifier_is_not_offered_the_digits_arrays(client, member, team):
    """The task says classification (the upload form's first choice), but the model's head reads
    token ids: the digits' float features do not fit it, token ids do."""
    lm = _text_lm(team)
    lm.asset.task = "classification"
    lm.asset.save()
    type(lm).objects.filter(pk=lm.pk).update(
        format_detail="Hugging Face zip: model_type=gpt2, GPT2LMHeadModel, 1 safetensors file(s)")
    _dataset(team, "digits-test", fmt="npz", task="classification", arrays=DIGITS_NPZ)
    _dataset(team, "token-ids", fmt="npz", task="classification", arrays=TOKEN_IDS_NPZ)
    client.force_login(member)
    offered, hidden = _menu(client.get(reverse("model-detail", args=[lm.asset_id])).content.decode(), lm)
    assert offered == ["token-ids"]
    assert ("digits-test: NPZ arrays inputs, labels: a text model reads token ids, an array named input_ids "
            "(or a text dataset its tokenizer reads).") in hidden


def test_an_audit_with_a_dataset_that_does_not_fit_is_refused_with_the_reason(client, member, team, cpu_worker,
                                                                             monkeypatch):
    monkeypatch.setattr(services, "_dispatch", lambda audit_id, queue: None)
    lm = _text_lm(team)
    digits = _dataset(team, "digits-test", fmt="npz", task="classification", arrays=DIGITS_NPZ)
    client.force_login(member)
    response = client.post(reverse("audit-create", args=[lm.pk]),
                           {"target": "cpu", "batch_sizes": "1", "recipes": ["baseline"], "dataset": digits.pk})
    assert response.status_code == 400
    html = response.content.decode()
    assert ("digits-test does not fit this model: a classification dataset; this model&#x27;s task is "
            "language modelling.") in html
    assert not Audit.objects.exists()


def test_the_api_refuses_an_unfit_dataset_with_the_same_reason_and_takes_one_that_fits(member, team, cpu_worker,
                                                                                    monkeypatch):
    from rest_framework.test import APIClient

    monkeypatch.setattr(services, "_dispatch", lambda audit_id, queue: None)
    lm = _text_lm(team)
    digits = _dataset(team, "digits-test", fmt="npz", task="classification", arrays=DIGITS_NPZ)
    wiki = _dataset(team, "wiki-sample", fmt="text", task="language-modeling")
    api = APIClient()
    api.force_authenticate(member)
    response = api.post("/api/v1/audits/", {"model_version": lm.pk, "dataset": digits.pk}, format="json")
    assert response.status_code == 400
    assert "digits-test does not fit this model: a classification dataset; this model's task is language modelling." \
        in response.content.decode()
    response = api.post("/api/v1/audits/", {"model_version": lm.pk, "dataset": wiki.pk}, format="json")
    assert response.status_code == 201, response.content.decode()


def test_the_dataset_upload_form_says_which_models_a_dataset_is_offered_to(client, member):
    client.force_login(member)
    html = client.get(reverse("dataset-list")).content.decode()
    assert "The audit form offers a dataset to the models it fits, and says why it hides the others" in html


# --- 6. the audits list shows the review status ----------------------------------------------------


def test_the_audits_list_has_a_review_column(client, lead, member, team):
    from .factories import make_audit

    approved, pending = finished_audit(team, user=member), finished_audit(team, user=member)
    review_create(user=lead, audit=approved, decision="approved")
    queued = make_audit(team, requested_by=member)
    client.force_login(member)
    html = client.get(reverse("audit-list")).content.decode()
    assert "<th>Review</th>" in html
    cells = dict(re.findall(r'<a href="/audits/(\d+)/">#\d+</a>.*?<td class="review-status">(.*?)</td>', html, re.S))
    assert ">Approved</a>" in cells[str(approved.pk)]
    assert ">Awaiting review</a>" in cells[str(pending.pk)]
    assert "—" in cells[str(queued.pk)]


def test_only_paths_under_the_storage_root_are_shortened(settings):
    from audit.services.redact import hide_storage_paths

    settings.STORAGE_ROOT = "/srv/ea/storage"
    assert hide_storage_paths("see /srv/ea/storage2/x.zip and /srv/ea/storage/models/1/x.zip.") == (
        "see /srv/ea/storage2/x.zip and x.zip.")
    assert hide_storage_paths("under /srv/ea/storage: full") == "under the stored file: full"
