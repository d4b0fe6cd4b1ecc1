"""Issue 21 end to end: docs/examples/audit_pipeline.py against a live server with a real Celery
worker and the real engine. The approved version is a tiny MLP; the release under test does
hundreds of times its compute, so the paired ratio against the approved version lies far above 1
and the gate exits with its "costs more" code."""
import hashlib
import importlib.util
import io
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from rest_framework.authtoken.models import Token

from audit.models import Audit, ModelAsset, ModelVersion

from ..models import mlp_safetensors_bytes

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

SCRIPT = Path(settings.BASE_DIR) / "docs" / "examples" / "audit_pipeline.py"
SMALL = {"in_features": 64, "hidden": [16], "num_classes": 10}
LARGE = {"in_features": 64, "hidden": [512, 512, 512], "num_classes": 10}


def approved_version(team, user) -> ModelVersion:
    content = mlp_safetensors_bytes(config=SMALL)
    asset, _ = ModelAsset.objects.get_or_create(team=team, name="release-mlp")
    version = ModelVersion(asset=asset, label="v6", format="safetensors", sha256=hashlib.sha256(content).hexdigest(),
                           size_bytes=len(content), uploaded_by=user)
    version.file.save("model.safetensors", ContentFile(content), save=False)
    version.save()
    Audit.objects.create(model_version=version, options={"batch_sizes": [1]}, status=Audit.Status.SUCCEEDED,
                         review_status=Audit.ReviewStatus.APPROVED)
    return version


def load_script():
    spec = importlib.util.spec_from_file_location("audit_pipeline", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def gate_release(live_server, member, tmp_path, config):
    """Run the CI gate on a v7 of ``config`` (seeded weights) as a pipeline would: (the script, its
    exit code, what it printed, the audit it requested)."""
    model = tmp_path / "v7.safetensors"
    model.write_bytes(mlp_safetensors_bytes(seed=7, config=config))
    script = load_script()
    args = script.parse_args([str(model), "--name", "release-mlp", "--label", "v7", "--batch-sizes", "1",
                              "--poll", "0.5", "--timeout", "300", "--url", live_server.url,
                              "--token", Token.objects.create(user=member).key])
    out = io.StringIO()
    code = script.run(script.Client(args.url, args.token), args, out=out)
    return script, code, out.getvalue(), Audit.objects.get(model_version__label="v7")


def test_the_gate_fails_a_release_that_costs_more_than_the_approved_version(live_server, member, team, start_worker,
                                                                            tmp_path):
    worker = start_worker()
    v6 = approved_version(team, member)
    script, code, output, audit = gate_release(live_server, member, tmp_path, LARGE)
    assert audit.status == Audit.Status.SUCCEEDED, output + audit.error + worker.log()
    assert audit.reference_version == v6 and audit.reference["status"] == "compared", (audit.reference, output)
    [row] = audit.reference["per_batch_size"]
    assert row["energy_ratio_ci95"][0] > 1.5 and row["verdict"] == "costs more", row
    assert code == script.EXIT_COSTS_MORE, output
    assert "batch 1: v7 vs v6 (approved): energy ×" in output and "v7 vs v6 (approved): costs more" in output


def test_the_gate_passes_a_release_that_costs_the_same_as_the_approved_version(live_server, member, team,
                                                                               start_worker, tmp_path):
    worker = start_worker()
    approved_version(team, member)
    script, code, output, audit = gate_release(live_server, member, tmp_path, SMALL)  # other weights, same compute
    assert audit.status == Audit.Status.SUCCEEDED, output + audit.error + worker.log()
    [row] = audit.reference["per_batch_size"]
    assert row["verdict"] != "costs more", row
    assert code == script.EXIT_PASS, output
