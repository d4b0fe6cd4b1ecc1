"""What a person sees: scoped pages, live progress that stops, the first report, failures."""
import pytest
from django.urls import reverse

from audit.models import Audit
from audit.services import audits as services

from .factories import make_audit, make_version, result_doc

pytestmark = pytest.mark.django_db


def finished_audit(team, result=None) -> Audit:
    audit = make_audit(team)
    claim = services.audit_claim(audit_id=audit.pk, hostname="w1")
    services.audit_store_result(audit_id=audit.pk, attempt=claim.attempt, result=result or result_doc())
    return Audit.objects.get(pk=audit.pk)


def test_pages_need_login(client):
    response = client.get(reverse("home"))
    assert response.status_code == 302 and reverse("login") in response["Location"]


def test_other_teams_objects_are_not_found(client, outsider, team):
    audit = finished_audit(team)
    client.force_login(outsider)
    for url in [
        audit.get_absolute_url(),
        reverse("audit-progress", args=[audit.pk]),
        audit.model_version.asset.get_absolute_url(),
    ]:
        assert client.get(url).status_code == 404, url
    assert client.post(reverse("audit-cancel", args=[audit.pk])).status_code == 404
    assert client.post(reverse("audit-create", args=[audit.model_version.pk]), {"target": "cpu"}).status_code == 404
    assert audit.model_version.asset.name not in client.get(reverse("home")).content.decode()


def test_progress_partial_polls_while_running_and_stops_when_done(member_client, team):
    audit = make_audit(team)
    claim = services.audit_claim(audit_id=audit.pk, hostname="w1")
    services.audit_progress(audit_id=audit.pk, attempt=claim.attempt, stage="measuring (1/1)", percent=42)
    running = member_client.get(reverse("audit-progress", args=[audit.pk]))
    assert running.status_code == 200
    body = running.content.decode()
    assert 'hx-trigger="every 1s"' in body and "measuring (1/1)" in body and "42%" in body

    services.audit_store_result(audit_id=audit.pk, attempt=claim.attempt, result=result_doc())
    done = member_client.get(reverse("audit-progress", args=[audit.pk]))
    assert done.status_code == 286  # htmx stops polling
    assert "hx-trigger" not in done.content.decode()


def test_report_shows_each_variant_and_batch_with_units_and_method(member_client, team):
    audit = finished_audit(team)
    page = member_client.get(audit.get_absolute_url()).content.decode()
    assert "report-table" in page
    assert "estimate-tdp" in page and "estimated" in page  # an estimate says so
    assert "2 mJ" in page  # 0.002 J per inference
    assert "4.67 kFLOPs" in page and "2.34 kMACs" in page
    assert "Test CPU" in page  # hardware fingerprint
    for bad in ("None", "nan", "NaN", "Traceback"):
        assert bad not in page


def test_failed_audit_shows_its_reason(member_client, team):
    audit = make_audit(team)
    claim = services.audit_claim(audit_id=audit.pk, hostname="w1")
    services.audit_fail(audit_id=audit.pk, attempt=claim.attempt, error="The model could not be loaded: bad header")
    page = member_client.get(audit.get_absolute_url()).content.decode()
    assert "The model could not be loaded: bad header" in page
    assert "report-table" not in page


def test_request_audit_from_the_model_page(member_client, team, monkeypatch, django_capture_on_commit_callbacks):
    sent = []
    monkeypatch.setattr(services, "_dispatch", lambda audit_id, queue: sent.append((audit_id, queue)))
    version = make_version(team)
    page = member_client.get(version.asset.get_absolute_url()).content.decode()
    assert "Request an audit" in page
    with django_capture_on_commit_callbacks(execute=True):
        response = member_client.post(
            reverse("audit-create", args=[version.pk]), {"target": "cpu", "batch_sizes": "32, 1", "recipes": ["baseline"]}
        )
    audit = Audit.objects.get()
    assert response.status_code == 302 and response["Location"] == audit.get_absolute_url()
    assert audit.options["batch_sizes"] == [1, 32] and sent == [(audit.pk, "cpu")]


def test_bad_batch_sizes_are_refused_on_the_form(member_client, team):
    version = make_version(team)
    response = member_client.post(reverse("audit-create", args=[version.pk]), {"target": "cpu", "batch_sizes": "1,x", "recipes": ["baseline"]})
    assert response.status_code == 400
    assert "whole numbers" in response.content.decode()
    assert Audit.objects.count() == 0


def test_cancel_a_queued_audit(member_client, team):
    audit = make_audit(team)
    member_client.post(reverse("audit-cancel", args=[audit.pk]))
    assert Audit.objects.get(pk=audit.pk).status == "cancelled"


def test_parameterised_recipes_typed_on_the_form_reach_the_audit(member_client, team, monkeypatch):
    monkeypatch.setattr(services, "_dispatch", lambda audit_id, queue: None)
    version = make_version(team)
    response = member_client.post(
        reverse("audit-create", args=[version.pk]),
        {"target": "cpu", "batch_sizes": "1", "recipes": ["baseline", "prune-unstructured:0.5, int8-dynamic"]},
    )
    assert response.status_code == 302
    assert Audit.objects.get().options["recipes"] == ["baseline", "prune-unstructured:0.5", "int8-dynamic"]


def test_unknown_recipe_is_refused_on_the_form(member_client, team):
    version = make_version(team)
    response = member_client.post(
        reverse("audit-create", args=[version.pk]), {"target": "cpu", "batch_sizes": "1", "recipes": ["baseline", "turbo:9"]}
    )
    assert response.status_code == 400 and "turbo" in response.content.decode()
    assert Audit.objects.count() == 0


def test_the_audit_form_takes_generation_lengths_and_latency_targets(member_client, team, cpu_worker, monkeypatch):
    from audit.models import Audit
    from audit.services import audits as audit_services

    monkeypatch.setattr(audit_services, "_dispatch", lambda audit_id, queue: None)
    version = make_audit(team).model_version
    page = member_client.get(f"/models/{version.asset_id}/")
    assert b'name="new_tokens"' in page.content and b'name="slo_tpot_ms_p95"' in page.content
    response = member_client.post(f"/versions/{version.pk}/audits/", {
        "target": "cpu", "batch_sizes": "1", "recipes": ["baseline"], "scenario": "generation",
        "prompt_tokens": "32", "new_tokens": "8", "slo_tpot_ms_p95": "40", "timing_mode": "latency"})
    assert response.status_code == 302, response.content[:2000]
    options = Audit.objects.order_by("-pk").first().options
    assert (options["scenario"], options["prompt_tokens"], options["new_tokens"], options["slo_tpot_ms_p95"]) == ("generation", 32, 8, 40.0)
    response = member_client.post(f"/versions/{version.pk}/audits/", {
        "target": "cpu", "batch_sizes": "1", "recipes": ["baseline"], "new_tokens": "4096"})
    assert response.status_code == 400 and "1024" in response.content.decode()


def test_reloading_the_address_of_a_form_error_leads_back_to_the_form(member_client, team):
    """The audit form posts to /versions/<pk>/audits/; a reload or a bookmark of that address
    (a GET) goes back to the model's page, never to a 405."""
    version = make_audit(team).model_version
    response = member_client.post(f"/versions/{version.pk}/audits/", {"target": "cpu", "batch_sizes": "0", "recipes": ["baseline"]})
    assert response.status_code == 400
    again = member_client.get(f"/versions/{version.pk}/audits/")
    assert again.status_code == 302 and again["Location"] == version.get_absolute_url()
    assert member_client.get(again["Location"]).status_code == 200


def test_navigation_has_budgets_and_marks_the_current_page(member_client):
    page = member_client.get(reverse("budget-list")).content.decode()
    assert '<a href="/budgets/" id="nav-budgets" aria-current="page">Budgets</a>' in page
    assert 'aria-current="page"' not in member_client.get(reverse("compare")).content.decode().split("Compare</a>")[1].split("</header>")[0]
