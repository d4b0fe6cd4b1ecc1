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


DEEP = "[" * 1000 + "]" * 1000
DEEP_OBJECT = '{"a": ' * 1000 + "1" + "}" * 1000


@pytest.mark.parametrize("url", ["/api/v1/audits/", "/api/v1/models/", "/api/v1/audits/1/reviews/", "/login/",
                                 "/admin/login/", "/no-such-page/", "/api/v1/budgets/"])
@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT])
def test_deeply_nested_json_bodies_are_refused_anonymously(client, url, body):
    response = client.post(url, data=body, content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    assert b"nested deeper than" in response.content


def test_deeply_nested_json_is_refused_with_its_reason_for_a_user(api, audit):
    for content_type in ("application/json", "application/merge-patch+json"):
        response = api.post(f"/api/v1/audits/{audit.pk}/reviews/", data=DEEP_OBJECT, content_type=content_type)
        assert response.status_code == 400
        assert "nested deeper than" in response.json()["non_field_errors"][0]
    assert Review.objects.count() == 0


SPEC_TEXTS = [
    ('{"architecture": "mlp\\ud800"}', "Null characters and unpaired surrogates"),
    ('{"architecture_config": {"hidden": "\\u0000"}}', "Null characters and unpaired surrogates"),
    ('{"x\\u0000": 1}', "Null characters and unpaired surrogates"),
    ('{"input_overrides": {"a": "\\udc00"}}', "Null characters and unpaired surrogates"),
    ('{"architecture_config": ' + DEEP + "}", "nested deeper than"),
]


@pytest.mark.parametrize("text,reason", SPEC_TEXTS)
def test_api_upload_input_spec_text(api, text, reason):
    response = upload(api, "/api/v1/models/", input_spec=text)
    assert response.status_code == 400, response.content[:500]
    assert reason in response.json()["input_spec"][0]
    assert ModelVersion.objects.count() == 0


@pytest.mark.parametrize("text,reason", [
    ('{"hidden": "\\u0000"}', "Null characters and unpaired surrogates"),
    ('{"hidden": "\\ud800"}', "Null characters and unpaired surrogates"),
    ('{"in\\u0000features": 64}', "Null characters and unpaired surrogates"),
    ('{"hidden": ' + DEEP + "}", "nested deeper than"),
])
def test_form_upload_architecture_config_text(member_client, text, reason):
    response = upload(member_client, reverse("model-upload"), architecture="mlp", architecture_config=text)
    assert response.status_code == 400
    assert reason in response.context["form"].errors["architecture_config"][0]
    assert ModelVersion.objects.count() == 0
