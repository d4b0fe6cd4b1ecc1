"""Every endpoint and method, for an anonymous client, a member of another team, a member and a
lead of the audit's team: one table, one parametrized test. Another team's object is 404,
never 403; a member trying a lead's action is 403; anonymous is 401."""
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from audit.models import EnergyBudget

from ..factories import make_audit
from ..models import mlp_safetensors_bytes
from .conftest import token_client
from .helpers import finished_audit, make_dataset

pytestmark = pytest.mark.django_db

ANON, OUTSIDER, MEMBER, LEAD = "anonymous", "outsider", "member", "lead"
KINDS = (ANON, OUTSIDER, MEMBER, LEAD)


def model_file():
    return SimpleUploadedFile("weights.safetensors", mlp_safetensors_bytes(seed=7), content_type="application/octet-stream")


def dataset_file():
    return SimpleUploadedFile("tiny.csv", b"text,label\nfine,1\nbad,0\nok,1\n", content_type="text/csv")


# (name, method, url template, body factory, format, expected status per kind: anonymous, outsider, member, lead)
TABLE = [
    ("models list", "get", "/api/v1/models/", None, None, (401, 200, 200, 200)),
    ("model upload", "post", "/api/v1/models/",
     lambda w: {"team": "vision-lab", "name": "digits-mlp", "label": "api", "file": model_file()}, "multipart",
     (401, 400, 201, 201)),
    ("model detail", "get", "/api/v1/models/{model}/", None, None, (401, 404, 200, 200)),
    ("versions list", "get", "/api/v1/versions/", None, None, (401, 200, 200, 200)),
    ("version detail", "get", "/api/v1/versions/{version}/", None, None, (401, 404, 200, 200)),
    ("datasets list", "get", "/api/v1/datasets/", None, None, (401, 200, 200, 200)),
    ("dataset upload", "post", "/api/v1/datasets/",
     lambda w: {"team": "vision-lab", "name": "tiny", "file": dataset_file()}, "multipart", (401, 400, 201, 201)),
    ("dataset detail", "get", "/api/v1/datasets/{dataset}/", None, None, (401, 404, 200, 200)),
    ("audits list", "get", "/api/v1/audits/", None, None, (401, 200, 200, 200)),
    ("audit request", "post", "/api/v1/audits/", lambda w: {"model_version": w["version"], "batch_sizes": [1]}, "json",
     (401, 400, 201, 201)),
    ("audit detail", "get", "/api/v1/audits/{audit}/", None, None, (401, 404, 200, 200)),
    ("audit status", "get", "/api/v1/audits/{audit}/status/", None, None, (401, 404, 200, 200)),
    ("audit cancel (finished)", "post", "/api/v1/audits/{audit}/cancel/", None, "json", (401, 404, 409, 409)),
    ("audit badge link", "get", "/api/v1/audits/{audit}/badge-link/", None, None, (401, 404, 200, 200)),
    ("audit badge link issue", "post", "/api/v1/audits/{audit}/badge-link/", lambda w: {"action": "issue"}, "json",
     (401, 404, 403, 200)),
    ("audit cancel (queued)", "post", "/api/v1/audits/{queued}/cancel/", None, "json", (401, 404, 200, 200)),
    ("missing audit", "get", "/api/v1/audits/987654/", None, None, (401, 404, 404, 404)),
    ("review history", "get", "/api/v1/audits/{audit}/reviews/", None, None, (401, 404, 200, 200)),
    ("review approve", "post", "/api/v1/audits/{audit}/reviews/", lambda w: {"decision": "approved", "comment": "ok"},
     "json", (401, 404, 403, 201)),
    ("review request changes", "post", "/api/v1/audits/{audit}/reviews/",
     lambda w: {"decision": "changes-requested", "comment": "measure at batch 8"}, "json", (401, 404, 403, 201)),
    ("review comment", "post", "/api/v1/audits/{audit}/reviews/", lambda w: {"decision": "comment", "comment": "hm"},
     "json", (401, 404, 201, 201)),
    ("review queue", "get", "/api/v1/audits/review-queue/", None, None, (401, 200, 200, 200)),
    ("export csv", "get", "/api/v1/audits/export.csv", None, None, (401, 200, 200, 200)),
    ("export json", "get", "/api/v1/audits/export.json", None, None, (401, 200, 200, 200)),
    ("budgets list", "get", "/api/v1/budgets/", None, None, (401, 200, 200, 200)),
    ("budget create", "post", "/api/v1/budgets/",
     lambda w: {"team": "vision-lab", "name": "edge", "max_j_per_inference": 0.01}, "json", (401, 403, 403, 201)),
    ("budget detail", "get", "/api/v1/budgets/{budget}/", None, None, (401, 404, 200, 200)),
    ("budget update", "patch", "/api/v1/budgets/{budget}/", lambda w: {"max_latency_p95_ms": 5.0}, "json",
     (401, 404, 403, 200)),
    ("budget replace", "put", "/api/v1/budgets/{budget}/",
     lambda w: {"team": "vision-lab", "name": "lab", "max_j_per_inference": 1.0}, "json", (401, 404, 403, 200)),
    ("budget delete", "delete", "/api/v1/budgets/{budget}/", None, None, (401, 404, 403, 204)),
    ("schema", "get", "/api/v1/schema/", None, None, (200, 200, 200, 200)),
    ("swagger ui", "get", "/api/v1/docs/", None, None, (200, 200, 200, 200)),
]

CASES = [
    pytest.param(row, kind, expected, id=f"{row[0]}-{kind}")
    for row in TABLE
    for kind, expected in zip(KINDS, row[5])
]


@pytest.fixture
def world(team, other_team, member, lead, outsider):
    audit = finished_audit(team, user=member)
    queued = make_audit(team, model_version=audit.model_version, requested_by=member)
    budget = EnergyBudget.objects.create(team=team, name="lab", max_j_per_inference=1.0, created_by=lead)
    return {
        "users": {ANON: None, OUTSIDER: outsider, MEMBER: member, LEAD: lead},
        "audit": audit.pk,
        "queued": queued.pk,
        "version": audit.model_version.pk,
        "model": audit.model_version.asset_id,
        "dataset": make_dataset(team).pk,
        "budget": budget.pk,
    }


@pytest.mark.parametrize("row, kind, expected", CASES)
def test_endpoint_permissions(world, kind, row, expected, django_capture_on_commit_callbacks):
    name, method, url, body, fmt, _ = row
    client = token_client(world["users"][kind])
    url = url.format(**world)
    kwargs = {}
    if body is not None:
        kwargs["data"] = body(world)
    if fmt:
        kwargs["format"] = fmt
    with django_capture_on_commit_callbacks(execute=True):
        response = getattr(client, method)(url, **kwargs)
    if response.streaming:
        b"".join(response.streaming_content)
    assert response.status_code == expected, (name, kind, getattr(response, "data", None))
    if expected in (401, 403, 404):
        assert "detail" in response.json()
    if expected == 401:
        assert response["WWW-Authenticate"].startswith("Token")


def test_table_covers_every_route():
    """A new API route fails this test until it is added to the table above."""
    from audit.api import urls

    ids = {"model": 1, "version": 1, "dataset": 1, "audit": 1, "queued": 1, "budget": 1}
    tested = [row[2].format(**ids).removeprefix("/api/v1/") for row in TABLE]
    routes = [p.pattern for p in urls.router.urls] + [p.pattern for p in urls.urlpatterns if p.pattern.describe() != "''"]
    for route in routes:
        if str(route) in ("", "^$"):
            continue
        assert any(route.match(url) for url in tested), f"no row in TABLE for {route}"
