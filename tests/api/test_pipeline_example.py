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


# --- did this release cost more? (issue 21) -------------------------------------------------


def approved_v6(team):
    from ..factories import make_audit, make_version

    v6 = make_version(team, name="digits-mlp", label="v6")
    make_audit(team, model_version=v6, review_status=Audit.ReviewStatus.APPROVED)
    return v6


def with_reference(**row):
    from .helpers import reference_row, reference_section, result_with_reference

    return result_with_reference(reference_section([reference_row(1, **row)]))


def test_build_fails_with_its_own_code_when_the_release_costs_more_than_the_approved_version(api, tmp_path, team):
    v6 = approved_v6(team)
    code, output = run_pipeline(api, tmp_path, worker_result=with_reference())
    assert code == 6, output
    assert Audit.objects.get(model_version__label="ci-1").reference_version == v6  # the approved one, by default
    assert f"against version #{v6.pk}" in output
    assert ("batch 1: ci-1 vs v6 (approved): energy ×1.12 [1.05, 1.19], latency ×1.03 [0.98, 1.08]: costs more "
            "(grade B)") in output


def test_a_release_that_costs_the_same_passes_and_strict_fails_an_inconclusive_one(api, tmp_path, team):
    approved_v6(team)
    same = with_reference(energy=(1.0, 0.98, 1.02), verdict="no measurable difference")
    code, output = run_pipeline(api, tmp_path, worker_result=same, extra_args=["--strict"])
    assert code == 0 and "ci-1 vs v6 (approved): no measurable difference" in output, output
    unsure = with_reference(energy=(1.04, 0.97, 1.11), verdict="inconclusive")
    code, output = run_pipeline(api, tmp_path, worker_result=unsure, extra_args=["--label", "ci-2"])
    assert code == 0 and "inconclusive" in output, output
    code, output = run_pipeline(api, tmp_path, worker_result=unsure, extra_args=["--label", "ci-3", "--strict"])
    assert code == 5, output


def test_reference_none_or_an_id_is_passed_and_a_budget_failure_comes_first(api, tmp_path, team, lead):
    from ..factories import make_version

    approved_v6(team)
    code, output = run_pipeline(api, tmp_path, extra_args=["--reference", "none"])
    assert code == 0 and "no reference version" in output, output
    assert Audit.objects.get(model_version__label="ci-1").reference_version is None
    v5 = make_version(team, name="digits-mlp", label="v5")
    EnergyBudget.objects.create(team=team, name="release", max_energy_regression=0.05)
    code, output = run_pipeline(api, tmp_path, worker_result=with_reference(energy=(1.12, 1.06, 1.19)),
                                extra_args=["--reference", str(v5.pk), "--label", "ci-2"])
    assert Audit.objects.latest("id").reference_version == v5  # the same file: the same version, audited again
    assert code == 1, output  # the budget's regression limit failed: reported before "costs more"
    assert "FAIL release: energy_regression of baseline batch 1: energy ×1.12 [1.06, 1.19]" in output


def test_an_unknown_reference_is_an_api_error(api, tmp_path, team, other_team):
    from ..factories import make_version

    theirs = make_version(other_team, label="v1")
    code, output = run_pipeline(api, tmp_path, extra_args=["--reference", str(theirs.pk)])
    assert code == 4 and "not found" in output, output
