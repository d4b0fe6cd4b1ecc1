"""docs/examples/audit_pipeline.py against the API (its HTTP calls routed to the test client,
a fake worker finishing the audit while the script sleeps): it fails the build when a budget
fails, and with --strict when one is inconclusive."""
import importlib.util
import io
from pathlib import Path

import pytest
from django.conf import settings

from audit.models import Audit, EnergyBudget
from audit.services import audits as services

from ..models import mlp_safetensors_bytes
from ..factories import measurement_doc, result_doc

pytestmark = pytest.mark.django_db

SCRIPT = Path(settings.BASE_DIR) / "docs" / "examples" / "audit_pipeline.py"


def load_script():
    spec = importlib.util.spec_from_file_location("audit_pipeline", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_pipeline(api, tmp_path, *, worker_result=None, fail_with=None, extra_args=()):
    script = load_script()
    model = tmp_path / "model.safetensors"
    model.write_bytes(mlp_safetensors_bytes(seed=11))
    args = script.parse_args([str(model), "--name", "digits-mlp", "--label", "ci-1", "--poll", "0", "--token", "t", *extra_args])
    client = script.Client("http://testserver", "t")

    def send(method, path, body, content_type):
        response = api.generic(method, path, data=body or b"", content_type=content_type or "application/json")
        return response.status_code, response.content

    def worker_sleep(_seconds):
        for audit in Audit.objects.filter(status="queued"):
            claim = services.audit_claim(audit_id=audit.pk, hostname="ci-worker")
            if fail_with:
                services.audit_fail(audit_id=audit.pk, attempt=claim.attempt, error=fail_with)
            else:
                services.audit_store_result(audit_id=audit.pk, attempt=claim.attempt, result=worker_result or result_doc())

    client.send = send
    out = io.StringIO()
    code = script.run(client, args, sleep=worker_sleep, out=out)
    return code, out.getvalue()


def test_build_passes_when_budgets_pass(api, tmp_path, team, lead):
    EnergyBudget.objects.create(team=team, name="edge", max_j_per_inference=0.01)
    code, output = run_pipeline(api, tmp_path)
    assert code == 0, output
    assert "PASS edge: j_per_inference of baseline batch 1" in output and "budgets pass" in output


def test_build_fails_when_a_budget_fails(api, tmp_path, team, lead):
    EnergyBudget.objects.create(team=team, name="edge", max_j_per_inference=0.001)
    code, output = run_pipeline(api, tmp_path)
    assert code == 1, output
    assert "FAIL edge" in output and "budgets fail" in output


def test_failed_audit_and_api_errors_have_their_own_exit_codes(api, tmp_path, team):
    code, output = run_pipeline(api, tmp_path, fail_with="The model could not be loaded")
    assert code == 2 and "could not be loaded" in output
    api.credentials(HTTP_AUTHORIZATION="Token wrong")
    code, output = run_pipeline(api, tmp_path)
    assert code == 4 and "HTTP 401" in output


def noisy_estimate() -> dict:
    """A CPU estimate graded D on a noisy runner: 385 mJ per inference, ±84% (one standard
    uncertainty), so its 95% interval is [117, 1270] mJ."""
    doc = result_doc()
    doc["variants"][0]["measurements"] = [measurement_doc(
        1, energy_j_per_inference=0.385, energy_uncertainty_rel=0.84, quality_grade="D",
        quality_reasons=["D: 95% interval of the mean latency is ±40.0%"])]
    return doc


def test_build_fails_on_a_gross_violation_whatever_the_grade(api, tmp_path, team, lead):
    EnergyBudget.objects.create(team=team, name="edge", max_j_per_inference=0.01)
    code, output = run_pipeline(api, tmp_path, worker_result=noisy_estimate())
    assert code == 1, output
    assert "FAIL edge: j_per_inference of baseline batch 1: 385 mJ [117, 1270] > 10 mJ: fail" in output
    assert "budgets fail" in output


def test_strict_fails_the_build_when_a_budget_is_inconclusive(api, tmp_path, team, lead):
    EnergyBudget.objects.create(team=team, name="edge", max_j_per_inference=0.4)  # inside [117, 1270] mJ
    code, output = run_pipeline(api, tmp_path, worker_result=noisy_estimate())
    assert code == 0, output
    assert "INCONCLUSIVE edge: j_per_inference of baseline batch 1: 385 mJ [117, 1270] vs 400 mJ" in output
    assert "budgets inconclusive" in output
    code, output = run_pipeline(api, tmp_path, worker_result=noisy_estimate(), extra_args=["--strict", "--label", "ci-2"])
    assert code == 5, output
    EnergyBudget.objects.update(max_j_per_inference=10.0)  # above 1270 mJ: a pass, strict or not
    code, output = run_pipeline(api, tmp_path, worker_result=noisy_estimate(), extra_args=["--strict", "--label", "ci-3"])
    assert code == 0 and "budgets pass" in output, output
