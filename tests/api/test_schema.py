"""The OpenAPI schema generates without a single warning (after paperless-ngx's
test_api_schema.py), and Swagger UI is served from the vendored static files."""
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command


def test_schema_generates_without_warnings(tmp_path):
    out = tmp_path / "schema.yml"
    try:
        call_command("spectacular", "--fail-on-warn", "--validate", "--file", str(out))
    except Exception as exc:  # the command raises on the first warning or validation error
        pytest.fail(f"schema generation warned or failed: {exc}")
    text = out.read_text()
    for path in ("/api/v1/audits/", "/api/v1/audits/{id}/", "/api/v1/audits/{audit_pk}/reviews/",
                 "/api/v1/audits/export.csv", "/api/v1/audits/export.json", "/api/v1/models/", "/api/v1/datasets/",
                 "/api/v1/budgets/"):
        assert f"  {path}:" in text, path
    assert "energy_j_per_inference" in text and "tokenAuth" in text and "cookieAuth" in text


@pytest.mark.django_db
def test_swagger_ui_is_served_from_local_static_files(client):
    page = client.get("/api/v1/docs/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in body
    assert "cdn.jsdelivr" not in body and "unpkg" not in body
    vendor = Path(settings.BASE_DIR) / "static" / "vendor" / "swagger-ui"
    for name in ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css", "favicon-32x32.png"):
        assert (vendor / name).stat().st_size > 0, name


@pytest.mark.django_db
def test_schema_endpoint_serves_openapi(client):
    response = client.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    assert response.json()["openapi"].startswith("3.")


def test_vendored_swagger_files_reference_no_missing_source_maps():
    """The manifest static storage (production collectstatic) fails on a reference to a missing file."""
    vendor = Path(settings.BASE_DIR) / "static" / "vendor" / "swagger-ui"
    for path in vendor.glob("*.[jc]s*"):
        text = path.read_text(errors="replace")
        if "sourceMappingURL=" in text:
            name = text.rsplit("sourceMappingURL=", 1)[1].split()[0].rstrip("*/")
            assert (vendor / name).exists(), f"{path.name} references {name}"
