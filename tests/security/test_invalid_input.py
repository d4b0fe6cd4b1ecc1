"""NUL and unpaired surrogates anywhere in a request are a 400, never a 500."""
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from audit.models import ModelVersion, Review

from ..api.conftest import token_client
from ..api.helpers import finished_audit
from ..models import mlp_safetensors_bytes

pytestmark = pytest.mark.django_db
NUL = "\x00"


@pytest.fixture
def api(member):
    return token_client(member)


@pytest.fixture
def audit(team, member):
    return finished_audit(team, user=member)


def upload(client, url, **fields):
    data = {"name": "digits-mlp", "task": "classification",
            "file": SimpleUploadedFile("model.safetensors", mlp_safetensors_bytes()), **fields}
    return client.post(url, data)


@pytest.mark.parametrize("field,value", [("name", f"mlp{NUL}x"), ("label", f"v1{NUL}"), ("task", NUL),
                                         ("input_spec", '{"architecture": "mlp\\u0000"}')])
def test_api_upload_fields(api, field, value):
    response = upload(api, "/api/v1/models/", **{field: value})
    assert response.status_code == 400, response.content[:500]
    assert ModelVersion.objects.count() == 0


def test_api_upload_file_name(api):
    response = api.post("/api/v1/models/", {"name": "m", "task": "classification",
                                            "file": SimpleUploadedFile(f"model{NUL}.safetensors", b"x" * 10)})
    assert response.status_code == 400


def test_form_upload_field(member_client):
    response = upload(member_client, reverse("model-upload"), name=f"mlp{NUL}")
    assert response.status_code == 400
    assert ModelVersion.objects.count() == 0


@pytest.mark.parametrize("body", [
    '{"decision": "comment", "comment": "a\\u0000b"}',
    '{"decision": "comment", "comment": "a\\ud800b"}',  # an unpaired surrogate
    '{"decision": "comment\\u0000", "comment": "x"}',
    '{"decision": "comment", "comment": "x", "extra\\u0000": {"deep": ["\\udfff"]}}',
])
def test_json_bodies(api, audit, body):
    response = api.post(f"/api/v1/audits/{audit.pk}/reviews/", data=body, content_type="application/json")
    assert response.status_code == 400, response.content[:500]
    assert Review.objects.count() == 0


@pytest.mark.parametrize("query", ["status=%00", "created_after=2026-01-01%00", "page=1%00", "ordering=%ED%A0%80",
                                   "model=%00", "q%00=1"])
def test_query_strings(api, audit, query):
    for path in ("/api/v1/audits/", "/api/v1/audits/export.csv", "/api/v1/models/"):
        response = api.get(f"{path}?{query}")
        assert response.status_code < 500 and response.status_code in (200, 400), (path, query, response.status_code)
    assert api.get(f"/api/v1/audits/?{query}").status_code in (200, 400)


def test_nul_in_the_token_or_session_cookie(client, member, audit):
    from rest_framework.test import APIClient

    bad_token = APIClient()
    bad_token.credentials(HTTP_AUTHORIZATION=f"Token abc{NUL}def")
    assert bad_token.get("/api/v1/audits/").status_code == 400
    client.cookies["sessionid"] = f"abcdefgh{NUL}ijkl"
    assert client.get(reverse("audit-list")).status_code == 400


def test_nul_in_a_page_query(member_client, audit):
    response = member_client.get(reverse("audit-list") + "?status=%00")
    assert response.status_code == 400


def test_ordinary_text_still_passes(api, audit):
    response = api.post(f"/api/v1/audits/{audit.pk}/reviews/",
                        data=json.dumps({"decision": "comment", "comment": "grüße ✓ \t tab"}),
                        content_type="application/json")
    assert response.status_code == 201, response.content[:500]
