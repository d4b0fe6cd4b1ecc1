"""Issue 21: an audit names the version it is measured against (the approved one by default),
through the API and the model page's form alike, and refuses what cannot be compared."""
import pytest
from django.urls import reverse

from audit.models import Audit

from ..factories import make_audit, make_version

pytestmark = pytest.mark.django_db


def approve(version) -> Audit:
    return make_audit(version.asset.team, model_version=version, review_status=Audit.ReviewStatus.APPROVED)


def request_audit(api, version, **fields):
    return api.post("/api/v1/audits/", {"model_version": version.pk, **fields}, format="json")


def test_the_approved_version_is_the_default_reference(api, team):
    v6, v7 = make_version(team, label="v6"), make_version(team, label="v7")
    approve(v6)
    response = request_audit(api, v7)
    assert response.status_code == 201, response.json()
    audit = Audit.objects.get(pk=response.json()["id"])
    assert audit.reference_version == v6 and audit.options["reference_label"] == "v6 (approved)"
    assert response.json()["reference_version"] == v6.pk


def test_a_version_whose_latest_audit_is_not_approved_is_not_the_default(api, team):
    v5, v6, v7 = (make_version(team, label=label) for label in ("v5", "v6", "v7"))
    approve(v5)
    approve(v6)
    make_audit(team, model_version=v6, review_status=Audit.ReviewStatus.CHANGES_REQUESTED)  # v6's latest
    audit = Audit.objects.get(pk=request_audit(api, v7).json()["id"])
    assert audit.reference_version == v5


def test_no_approved_version_means_no_reference(api, team):
    v1, v2 = make_version(team, label="v1"), make_version(team, label="v2")
    make_audit(team, model_version=v1, review_status=Audit.ReviewStatus.PENDING)
    audit = Audit.objects.get(pk=request_audit(api, v2).json()["id"])
    assert audit.reference_version is None and "reference_label" not in audit.options


def test_the_approved_version_audited_again_is_not_its_own_reference(api, team):
    v6 = make_version(team, label="v6")
    approve(v6)
    audit = Audit.objects.get(pk=request_audit(api, v6).json()["id"])
    assert audit.reference_version is None


def test_null_asks_for_no_reference_and_an_id_names_one(api, team):
    v5, v6, v7 = (make_version(team, label=label) for label in ("v5", "v6", "v7"))
    approve(v6)
    none = Audit.objects.get(pk=request_audit(api, v7, reference_version=None).json()["id"])
    assert none.reference_version is None
    named = Audit.objects.get(pk=request_audit(api, v7, reference_version=v5.pk).json()["id"])
    assert named.reference_version == v5 and named.options["reference_label"] == "v5"


def test_another_teams_version_is_not_found_and_the_same_version_is_refused(api, team, other_team):
    v7, theirs = make_version(team, label="v7"), make_version(other_team, label="v1")
    response = request_audit(api, v7, reference_version=theirs.pk)
    assert response.status_code == 400
    assert "not found" in response.json()["reference_version"][0]
    response = request_audit(api, v7, reference_version=v7.pk)
    assert response.status_code == 400
    assert "cannot be the audited version itself" in str(response.json())
    assert Audit.objects.count() == 0


def test_the_model_page_form_offers_the_reference_and_refuses_the_same_version(member_client, team):
    v6, v7 = make_version(team, label="v6"), make_version(team, label="v7")
    approve(v6)
    page = member_client.get(v7.asset.get_absolute_url()).content.decode()
    assert "Compare with" in page and "the approved version (default)" in page
    url = reverse("audit-create", args=[v7.pk])
    response = member_client.post(url, {"target": "cpu", "batch_sizes": "1", "recipes": ["baseline"],
                                         "reference_version": str(v7.pk)})
    assert response.status_code == 400 and "cannot be the audited version itself" in response.content.decode()
    response = member_client.post(url, {"target": "cpu", "batch_sizes": "1", "recipes": ["baseline"]})
    assert response.status_code == 302
    assert Audit.objects.latest("id").reference_version == v6
    member_client.post(url, {"target": "cpu", "batch_sizes": "1", "recipes": ["baseline"], "reference_version": "none"})
    assert Audit.objects.latest("id").reference_version is None


def test_the_engine_request_carries_the_reference_as_its_own_audits_load_it(api, team):
    from workers.runner import build_engine_request

    v6, v7 = make_version(team, label="v6"), make_version(team, label="v7")
    v6.input_spec = {"architecture": "mlp", "architecture_config": {"in_features": 64}, "seq_len": 32,
                     "input_overrides": {"image_size": 64}}
    v6.save()
    approve(v6)
    audit = Audit.objects.get(pk=request_audit(api, v7).json()["id"])
    request = build_engine_request(audit)
    assert request["reference"] == {
        "path": v6.file.path, "format": "safetensors", "label": "v6 (approved)", "seq_len": 32,
        "options": {"architecture": "mlp", "architecture_config": {"in_features": 64},
                    "input_overrides": {"image_size": 64}},
    }
    assert request["path"] == v7.file.path  # the audited version stays the subject
    alone = Audit.objects.get(pk=request_audit(api, v7, reference_version=None).json()["id"])
    assert build_engine_request(alone)["reference"] is None


def test_the_database_refuses_an_audit_of_a_version_against_itself(team):
    from django.db import IntegrityError, transaction

    v7 = make_version(team, label="v7")
    with pytest.raises(IntegrityError), transaction.atomic():
        make_audit(team, model_version=v7, reference_version=v7)
