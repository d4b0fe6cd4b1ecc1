"""Grid carbon intensity per team and per audit: the shipped table, the optional live
provider (a local HTTP server stands in for Electricity Maps; never the network), and
the basis shown beside every gram."""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.exceptions import ValidationError

from audit.services import audits as services
from workers.engine import carbon
from workers.runner import build_engine_request

from .api.conftest import token_client
from .factories import make_version
from .reports.helpers import stored_audit

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_dispatch(monkeypatch, settings):
    monkeypatch.setattr(services, "_dispatch", lambda audit_id, queue: None)
    settings.ELECTRICITYMAPS_API_KEY = ""


def _request(member, team, **kw):
    from audit.models import ModelVersion

    version = make_version(team, label=f"v{ModelVersion.objects.count() + 1}")
    return services.audit_request(user=member, model_version=version, **kw)


def test_default_is_the_world_row_with_its_provenance(member, team):
    options = _request(member, team).options
    world = carbon.lookup("WORLD")
    assert options["grid_intensity_g_per_kwh"] == world["grid_intensity_g_per_kwh"] == 481.0
    assert (options["carbon_region"], options["carbon_year"], options["carbon_kind"]) == ("WORLD", 2023, "average")
    assert options["carbon_licence"] == "CC-BY-4.0" and "Ember" in options["carbon_source"]


def test_team_region_and_pue_then_the_audit_region_overrides(member, team):
    team.grid_region, team.pue = "fr", 1.4
    team.save()
    options = _request(member, team).options
    assert (options["grid_intensity_g_per_kwh"], options["pue"], options["carbon_region"]) == (56.0, 1.4, "FR")
    options = _request(member, team, grid_region="DE").options
    assert (options["grid_intensity_g_per_kwh"], options["pue"], options["carbon_region"]) == (381.0, 1.4, "DE")
    with pytest.raises(ValidationError):
        _request(member, team, grid_region="XX")


def test_team_intensity_is_named_as_a_team_setting(member, team):
    team.grid_intensity_g_per_kwh, team.carbon_source = 120.0, "our PPA, 2024"
    team.save()
    options = _request(member, team).options
    assert options["grid_intensity_g_per_kwh"] == 120.0 and options["carbon_source"] == "our PPA, 2024"
    assert "carbon_year" not in options  # nothing invented about a figure the team gave


def test_the_engine_request_carries_the_carbon_provenance(member, team):
    audit = _request(member, team, grid_region="SE")
    options = build_engine_request(audit)["options"]
    assert options["grid_intensity_g_per_kwh"] == 41.0
    for key in ("carbon_source", "carbon_region", "carbon_year", "carbon_kind", "carbon_licence", "carbon_source_url"):
        assert options[key] == audit.options[key]


def test_api_takes_a_grid_region_and_refuses_an_unknown_one(member, team, cpu_worker):
    api = token_client(member)
    version = make_version(team)
    response = api.post("/api/v1/audits/", {"model_version": version.pk, "batch_sizes": [1], "grid_region": "pl"},
                        format="json")
    assert response.status_code == 201, response.content
    from audit.models import Audit

    assert Audit.objects.get(pk=response.json()["id"]).options["carbon_region"] == "PL"
    response = api.post("/api/v1/audits/", {"model_version": version.pk, "grid_region": "Atlantis"}, format="json")
    assert response.status_code == 400 and "grid_region" in response.json()


def test_form_offers_the_regions_and_stores_the_choice(member_client, team):
    from audit.models import Audit

    version = make_version(team)
    page = member_client.get(version.asset.get_absolute_url()).content.decode()
    assert 'name="grid_region"' in page and "Germany (DE): 381 gCO2e/kWh, 2023" in page
    response = member_client.post(_create_url(version),
                                  {"target": "cpu", "batch_sizes": "1", "recipes": ["baseline"], "grid_region": "NO"})
    assert response.status_code == 302
    assert Audit.objects.latest("pk").options["grid_intensity_g_per_kwh"] == 30.0


def _create_url(version):
    from django.urls import reverse

    return reverse("audit-create", args=[version.pk])


def test_report_shows_the_basis_beside_the_grams(member_client, team):
    audit = stored_audit(team, options={"batch_sizes": [1], "recipes": ["baseline"], "pue": 1.0,
                                        **carbon.lookup("FR")})
    page = member_client.get(audit.get_absolute_url()).content.decode()
    assert "FR 2023 average" in page
    assert "56 gCO₂e/kWh, FR 2023 average (Ember yearly electricity data" in page


# ------------------------------------------------------------------ Electricity Maps


class _Provider:
    """A stand-in for api.electricitymap.org on 127.0.0.1: records requests, answers as told."""

    def __init__(self, status=200, body=None, delay_s=0.0):
        self.status, self.body, self.delay_s, self.requests = status, body, delay_s, []
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                provider.requests.append((self.path, self.headers.get("auth-token")))
                time.sleep(provider.delay_s)
                payload = json.dumps(provider.body or {}).encode()
                self.send_response(provider.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v3"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def provider(settings):
    made = []

    def make(**kw):
        p = _Provider(**kw)
        made.append(p)
        settings.ELECTRICITYMAPS_API_KEY = "test-key"
        settings.ELECTRICITYMAPS_API_URL = p.url
        settings.ELECTRICITYMAPS_TIMEOUT_S = 0.5
        return p

    yield make
    for p in made:
        p.close()


def test_live_intensity_when_the_provider_answers(member, team, provider):
    p = provider(body={"zone": "DE", "carbonIntensity": 312, "datetime": "2026-12-03T18:00:00.000Z"})
    options = _request(member, team, grid_region="DE").options
    assert p.requests == [("/v3/carbon-intensity/latest?zone=DE", "test-key")]
    assert options["grid_intensity_g_per_kwh"] == 312.0
    assert (options["carbon_region"], options["carbon_year"], options["carbon_kind"]) == ("DE", 2026, "average")
    assert "Electricity Maps" in options["carbon_source"] and "carbon_warning" not in options


@pytest.mark.parametrize("kw", [{"status": 500, "body": {"error": "down"}},
                                {"body": {"zone": "DE"}},  # no carbonIntensity
                                {"delay_s": 1.5, "body": {"carbonIntensity": 1}}])  # past the 0.5 s timeout
def test_provider_failure_falls_back_to_the_table_with_a_warning(member, team, provider, kw):
    provider(**kw)
    started = time.perf_counter()
    options = _request(member, team, grid_region="DE").options
    assert time.perf_counter() - started < 1.4  # the short timeout, not the provider's delay
    assert options["grid_intensity_g_per_kwh"] == 381.0 and options["carbon_year"] == 2023
    assert "Electricity Maps unavailable" in options["carbon_warning"]


def test_world_and_eu_are_never_asked_live(member, team, provider):
    p = provider(body={"carbonIntensity": 1})
    assert _request(member, team, grid_region="EU").options["carbon_region"] == "EU"
    assert p.requests == []


def test_a_team_region_outside_the_table_is_refused(team):
    team.grid_region = "atlantis"
    with pytest.raises(ValidationError) as exc:
        team.full_clean()
    assert "grid_region" in exc.value.message_dict
    team.grid_region = " de "
    team.full_clean()
    assert team.grid_region == "DE"
