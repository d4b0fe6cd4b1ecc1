"""docs/examples/audit_pipeline.py against the API (its HTTP calls routed to the test client,
a fake worker finishing the audit while the script sleeps): it fails the build exactly when a
budget fails."""
import importlib.util
import io
from pathlib import Path

import pytest
from django.conf import settings

from audit.models import Audit, EnergyBudget
from audit.services import audits as services

from ..models import mlp_safetensors_bytes
from ..factories import result_doc

pytestmark = pytest.mark.django_db

SCRIPT = Path(settings.BASE_DIR) / "docs" / "examples" / "audit_pipeline.py"


def load_script():
    spec = importlib.util.spec_from_file_location("audit_pipeline", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_pipeline(api, tmp_path, *, worker_result=None, fail_with=None):
    script = load_script()
    model = tmp_path / "model.safetensors"
    model.write_bytes(mlp_safetensors_bytes(seed=11))
    args = script.parse_args([str(model), "--name", "digits-mlp", "--label", "ci-1", "--poll", "0", "--token", "t"])
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
