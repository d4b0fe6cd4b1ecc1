"""Behaviour of the endpoints beyond permissions: uploads through the upload service, audit
requests, detail, filters, pagination, errors, CSRF on session writes, tokens."""
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from audit.api.pagination import QuerySetNotOrdered, StablePageNumberPagination
from audit.models import Audit, ModelVersion, Review

from ..factories import make_audit
from ..models import mlp_safetensors_bytes, pickled_module_bytes
from .helpers import add_accuracy, finished_audit, two_variant_result

pytestmark = pytest.mark.django_db


def upload(api, content: bytes, name="weights.safetensors", **fields):
    data = {"name": "digits-mlp", "file": SimpleUploadedFile(name, content), **fields}
    return api.post("/api/v1/models/", data, format="multipart")


def test_model_upload_goes_through_the_upload_service_and_dedupes(api, team):
    content = mlp_safetensors_bytes(seed=3)
    first = upload(api, content, label="v1")
    assert first.status_code == 201, first.json()
    body = first.json()
    assert body["format"] == "safetensors" and body["team"] == "vision-lab" and body["label"] == "v1"
    again = upload(api, content, label="v2")
    assert again.status_code == 200 and again.json()["id"] == body["id"]
    assert ModelVersion.objects.count() == 1


def test_refused_model_upload_is_a_400_with_the_field_error(api, team, _storage):
    response = upload(api, pickled_module_bytes(), name="model.pt")
    assert response.status_code == 400
    assert "pickle" in " ".join(response.json()["file"]).lower()
    assert ModelVersion.objects.count() == 0
    assert not [p for p in _storage.rglob("*") if p.is_file()]


def test_missing_fields_are_400_with_field_errors(api, team):
    response = api.post("/api/v1/models/", {}, format="multipart")
    assert response.status_code == 400
    assert set(response.json()) >= {"name", "file"}
    response = api.post("/api/v1/audits/", {"model_version": 999999, "batch_sizes": [0]}, format="json")
    assert response.status_code == 400 and set(response.json()) == {"model_version", "batch_sizes"}


def test_request_an_audit_and_poll_its_status(api, team, no_dispatch, django_capture_on_commit_callbacks):
    from audit.services.workers import worker_node_register

    worker_node_register(hostname="celery@gpu0", queue="gpu", device="cuda", fingerprint={})
    version = make_audit(team).model_version
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post("/api/v1/audits/", {"model_version": version.pk, "batch_sizes": [8, 1],
                                                "target_queue": "gpu"}, format="json")
    assert response.status_code == 201, response.json()
    audit = Audit.objects.get(pk=response.json()["id"])
    assert response["Location"] == f"/api/v1/audits/{audit.pk}/"
    assert audit.options["batch_sizes"] == [1, 8] and audit.device == "cuda" and no_dispatch == [(audit.pk, "gpu")]
    status = api.get(f"/api/v1/audits/{audit.pk}/status/").json()
    assert status["status"] == "queued" and status["finished"] is False


def test_unknown_recipe_is_refused(api, team):
    version = make_audit(team).model_version
    response = api.post("/api/v1/audits/", {"model_version": version.pk, "recipes": ["magic"]}, format="json")
    assert response.status_code == 400 and "recipes" in response.json()


def test_parameterised_recipes_are_accepted_in_canonical_form(api, team, no_dispatch):
    version = make_audit(team).model_version
    response = api.post("/api/v1/audits/", {"model_version": version.pk,
                                            "recipes": ["baseline", "prune-unstructured: 0.5", "distill"]}, format="json")
    assert response.status_code == 201, response.json()
    assert Audit.objects.get(pk=response.json()["id"]).options["recipes"] == [
        "baseline", "prune-unstructured:0.5", "distill"]


def test_audit_detail_has_variants_measurements_evaluations_budgets_and_reviews(api, team, member, lead):
    audit = finished_audit(team, user=member, result=two_variant_result())
    add_accuracy(audit, {"baseline": 0.9, "int8-dynamic": 0.88})
    Review.objects.create(audit=audit, reviewer=lead, decision="comment", comment="looks fine")
    body = api.get(f"/api/v1/audits/{audit.pk}/").json()
    assert [v["recipe"] for v in body["variants"]] == ["baseline", "int8-dynamic"]
    baseline = body["variants"][0]
    assert [m["batch_size"] for m in baseline["measurements"]] == [1, 8]
    assert baseline["measurements"][0]["energy_j_per_inference"] == pytest.approx(0.002)
    assert baseline["evaluations"][0]["metric"] == "accuracy"
    assert baseline["flops_per_sample"] == 4672
    assert body["reviews"][0]["comment"] == "looks fine" and body["review_status"] == "pending"
    assert body["hardware"] == "Test CPU (2 cores)" and body["budget_verdict"] == "" and body["budget_results"] == []


def test_list_filters_and_stable_pagination(api, team, member):
    audits = [finished_audit(team, user=member) for _ in range(5)]
    Audit.objects.filter(pk=audits[0].pk).update(review_status="approved", budget_verdict="fail")
    page1 = api.get("/api/v1/audits/?page_size=2").json()
    page2 = api.get(page1["next"]).json()
    page3 = api.get(page2["next"]).json()
    ids = [a["id"] for p in (page1, page2, page3) for a in p["results"]]
    assert page1["count"] == 5 and ids == sorted(ids, reverse=True) and len(set(ids)) == 5
    oldest_first = [a["id"] for a in api.get("/api/v1/audits/?ordering=created_at").json()["results"]]
    assert oldest_first == sorted(ids)
    assert [a["id"] for a in api.get("/api/v1/audits/?budget_verdict=fail").json()["results"]] == [audits[0].pk]
    assert api.get("/api/v1/audits/?review_status=approved").json()["count"] == 1
    assert api.get(f"/api/v1/audits/?model={audits[1].model_version.asset_id}").json()["count"] == 5
    assert api.get("/api/v1/audits/?status=queued").json()["count"] == 0
    assert api.get("/api/v1/audits/?hardware=cpu&device=cpu").json()["count"] == 5
    error = api.get("/api/v1/audits/?ordering=random&budget_verdict=maybe")
    assert error.status_code == 400 and set(error.json()) == {"ordering", "budget_verdict"}


def test_pagination_refuses_an_unordered_queryset(rf):
    from rest_framework.request import Request

    request = Request(rf.get("/api/v1/audits/"))
    with pytest.raises(QuerySetNotOrdered):
        StablePageNumberPagination().paginate_queryset(Review.objects.order_by(), request)


def test_every_list_endpoint_is_paginated(api, team):
    for url in ("/api/v1/models/", "/api/v1/versions/", "/api/v1/datasets/", "/api/v1/audits/",
                "/api/v1/audits/review-queue/", "/api/v1/budgets/"):
        body = api.get(url).json()
        assert set(body) >= {"count", "next", "previous", "results"}, url


def test_session_writes_need_csrf_and_reads_do_not(member, team, lead):
    audit = finished_audit(team, user=member)
    client = Client(enforce_csrf_checks=True)
    client.force_login(lead)
    assert client.get("/api/v1/audits/").status_code == 200
    refused = client.post(f"/api/v1/audits/{audit.pk}/reviews/", {"decision": "approved"}, content_type="application/json")
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    assert Review.objects.count() == 0
    client.get("/account/")  # any page sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    accepted = client.post(f"/api/v1/audits/{audit.pk}/reviews/", {"decision": "approved"},
                           content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 201


def test_token_writes_need_no_csrf(lead, team, member):
    audit = finished_audit(team, user=member)
    token = Token.objects.create(user=lead)
    client = APIClient(enforce_csrf_checks=True)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert client.post(f"/api/v1/audits/{audit.pk}/reviews/", {"decision": "approved"}, format="json").status_code == 201


def test_bad_token_is_401(team):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-token")
    response = client.get("/api/v1/audits/")
    assert response.status_code == 401 and response.json()["detail"]


def test_review_of_an_unfinished_audit_is_400(lead_api, team):
    audit = make_audit(team)
    response = lead_api.post(f"/api/v1/audits/{audit.pk}/reviews/", {"decision": "approved"}, format="json")
    assert response.status_code == 400 and "succeeded" in str(response.json())


def test_review_queue_lists_pending_audits_oldest_first_for_leads_only(api, lead_api, team, member):
    first, second = finished_audit(team, user=member), finished_audit(team, user=member)
    finished_audit(team, user=member).reviews.create(reviewer=None, decision="approved")
    Audit.objects.filter(pk=first.pk).update(finished_at=second.finished_at.replace(year=2020))
    queue = lead_api.get("/api/v1/audits/review-queue/").json()["results"]
    assert [a["id"] for a in queue][:2] == [first.pk, second.pk]
    assert all("budget_verdict" in a for a in queue)
    assert api.get("/api/v1/audits/review-queue/").json()["count"] == 0  # a member leads no team


def test_budget_api_rechecks_audits(lead_api, team, member):
    audit = finished_audit(team, user=member)
    created = lead_api.post("/api/v1/budgets/", {"name": "tiny", "max_j_per_inference": 0.001}, format="json")
    assert created.status_code == 201, created.json()
    assert Audit.objects.get(pk=audit.pk).budget_verdict == "fail"
    lead_api.patch(f"/api/v1/budgets/{created.json()['id']}/", {"max_j_per_inference": 1.0}, format="json")
    assert Audit.objects.get(pk=audit.pk).budget_verdict == "pass"
    assert lead_api.delete(f"/api/v1/budgets/{created.json()['id']}/").status_code == 204
    assert Audit.objects.get(pk=audit.pk).budget_verdict == ""
    empty = lead_api.post("/api/v1/budgets/", {"name": "nothing"}, format="json")
    assert empty.status_code == 400 and "non_field_errors" in empty.json()


def test_upload_reads_input_spec_json_and_needs_a_team_when_ambiguous(api, member, team, other_team):
    response = upload(api, mlp_safetensors_bytes(seed=5), input_spec='{"seq_len": 16}')
    assert response.status_code == 201, response.json()
    assert response.json()["input_spec"] == {"seq_len": 16}
    from audit.models import Membership

    Membership.objects.create(user=member, team=other_team)
    ambiguous = upload(api, mlp_safetensors_bytes(seed=6))
    assert ambiguous.status_code == 400 and "team" in ambiguous.json()
    chosen = upload(api, mlp_safetensors_bytes(seed=6), team="other-lab")
    assert chosen.status_code == 201 and chosen.json()["team"] == "other-lab"
    bad_spec = upload(api, mlp_safetensors_bytes(seed=8), team="other-lab", input_spec="[1, 2]")
    assert bad_spec.status_code == 400 and "input_spec" in bad_spec.json()


def test_list_and_detail_queries_do_not_grow_with_rows(api, team, member, django_assert_max_num_queries):
    audits = [finished_audit(team, user=member, result=two_variant_result()) for _ in range(6)]
    with django_assert_max_num_queries(6):  # auth, count, page (+ session bookkeeping)
        assert api.get("/api/v1/audits/").json()["count"] == 6
    with django_assert_max_num_queries(8):  # auth, audit, variants, measurements, evaluations, reviews
        api.get(f"/api/v1/audits/{audits[0].pk}/")


def test_unknown_api_paths_are_json_404(api):
    response = api.get("/api/v1/nothing-here/")
    assert response.status_code == 404 and response.json() == {"detail": "Not found."}
    hint = api.get("/api/v1/audits")
    assert hint.status_code == 404 and "/api/v1/audits/" in hint.json()["detail"]
    assert api.delete("/api/v1/audits/").status_code == 405


def test_an_audit_for_a_queue_no_live_worker_serves_is_refused_naming_the_live_ones(api, team, no_dispatch):
    version = make_audit(team).model_version
    response = api.post("/api/v1/audits/", {"model_version": version.pk, "target_queue": "gpu-h100"}, format="json")
    assert response.status_code == 400
    message = response.json()["target_queue"][0]
    assert "No live worker serves the queue “gpu-h100”" in message and "cpu (" in message
    assert no_dispatch == []


def test_measurement_options_reach_the_audit_and_bad_ones_are_named(api, team, no_dispatch):
    version = make_audit(team).model_version
    response = api.post("/api/v1/audits/", {
        "model_version": version.pk, "scenario": "generation", "prompt_tokens": 128, "new_tokens": 16,
        "slo_tpot_ms_p95": 50, "timing_mode": "throughput", "rounds": 4}, format="json")
    assert response.status_code == 201, response.json()
    options = Audit.objects.get(pk=response.json()["id"]).options
    assert (options["scenario"], options["prompt_tokens"], options["new_tokens"]) == ("generation", 128, 16)
    assert options["slo_tpot_ms_p95"] == 50.0 and options["timing_mode"] == "throughput" and options["rounds"] == 4
    response = api.post("/api/v1/audits/", {"model_version": version.pk, "new_tokens": 5000, "scenario": "chat"},
                        format="json")
    assert response.status_code == 400
    body = response.json()
    assert "1024" in body["new_tokens"][0] and "scenario" in body


def test_a_state_dict_without_architecture_is_refused_at_upload_with_the_fix(api, team, _storage):
    import io

    import torch

    from workers.engine.registry import get_architecture

    buffer = io.BytesIO()
    torch.save(get_architecture("mlp").build({"in_features": 64, "hidden": [32], "num_classes": 10}).state_dict(), buffer)
    response = upload(api, buffer.getvalue(), name="weights.pt")
    assert response.status_code == 400
    message = " ".join(response.json()["file"])
    assert "torch.save state dict" in message and "mlp" in message and "config.json" in message
    assert ModelVersion.objects.count() == 0 and not [p for p in _storage.rglob("*") if p.is_file()]
    named = upload(api, buffer.getvalue(), name="weights.pt",
                   input_spec='{"architecture": "mlp", "architecture_config": {"in_features": 64, "hidden": [32], "num_classes": 10}}')
    assert named.status_code == 201, named.json()
    assert named.json()["format"] == "state-dict"
    unknown = upload(api, mlp_safetensors_bytes(seed=9), name="w.safetensors", input_spec='{"architecture": "resnet-9000"}')
    assert unknown.status_code == 400 and "Unknown architecture “resnet-9000”" in " ".join(unknown.json()["file"])
