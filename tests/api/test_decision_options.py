"""The constraints of a recommendation and of the SLO answer are set per audit: the API and the
form take them under the names of audit/services/options.py, and they reach the engine."""
from audit.forms import AuditRequestForm
from audit.models import Audit
from workers.runner import build_engine_request

from ..factories import make_audit

CONSTRAINTS = {"min_fidelity": 0.9, "max_kl_divergence": 0.05, "max_perplexity_increase_rel": 0.02,
               "max_accuracy_drop": 0.02, "max_metric_increase_rel": 0.03, "min_saving": 0.1, "equivalence_margin": 0.02}


def test_constraints_set_through_the_api_reach_the_engine_request(api, team):
    version = make_audit(team).model_version
    response = api.post("/api/v1/audits/", {"model_version": version.pk, "slo_ttft_ms_p95": 300,
                                            "slo_tpot_ms_p95": 60, **CONSTRAINTS}, format="json")
    assert response.status_code == 201, response.json()
    audit = Audit.objects.get(pk=response.json()["id"])
    options = build_engine_request(audit)["options"]
    assert {k: options[k] for k in CONSTRAINTS} == CONSTRAINTS
    assert (options["slo_ttft_ms_p95"], options["slo_tpot_ms_p95"]) == (300.0, 60.0)
    response = api.post("/api/v1/audits/", {"model_version": version.pk, "min_fidelity": 1.5}, format="json")
    assert response.status_code == 400 and "min_fidelity" in response.json()


def test_the_audit_form_offers_every_constraint(team):
    form = AuditRequestForm(team=team, recipes=["baseline"])
    for name in CONSTRAINTS:
        assert name in form.fields and form.fields[name].help_text


def test_constraints_set_on_the_audit_form_are_stored(member_client, team):
    from django.urls import reverse

    version = make_audit(team).model_version
    page = member_client.get(version.asset.get_absolute_url()).content.decode()
    assert 'name="min_fidelity"' in page and 'name="equivalence_margin"' in page
    response = member_client.post(reverse("audit-create", args=[version.pk]),
                                  {"target": "cpu", "batch_sizes": "1", "recipes": ["baseline"], **CONSTRAINTS})
    assert response.status_code == 302
    options = Audit.objects.latest("pk").options
    assert {k: options[k] for k in CONSTRAINTS} == CONSTRAINTS
