"""Issue 21: the result's "reference" section (the audited version against its reference,
paired ratios) is untrusted like the rest of the child's result. A malformed section is dropped
with the reason in the audit's warnings, and the audit's own measurements are still stored:
through the real worker path with a hostile child, and through the store from any caller."""
import json
import math
from pathlib import Path

import pytest

from audit.models import Audit
from audit.services import audits as services
from workers import runner, tasks
from workers.engine.supervise import run_engine

from ..api.helpers import reference_section, result_with_reference
from ..factories import make_audit, make_version

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_dispatch")]

ROOT = Path(__file__).resolve().parents[2]
ENTRY = Path(__file__).with_name("hostile_child_entry.py")
REAL_RESULT = ROOT / "tests" / "reports" / "data" / "engine_result_digits_v2.json"




@pytest.fixture
def audit(member, team):
    v6, v7 = make_version(team, label="v6"), make_version(team, label="v7")
    make_audit(team, model_version=v6, review_status=Audit.ReviewStatus.APPROVED)
    return services.audit_request(user=member, model_version=v7, batch_sizes=[1, 8, 32],
                                  recipes=["baseline", "int8-dynamic", "fp16", "prune-unstructured:0.5"])


def run_hostile(monkeypatch, audit: Audit, doc: dict) -> Audit:
    def engine(request, **kwargs):
        assert request["reference"]["label"] == "v6 (approved)"  # the worker asked for the comparison
        return run_engine({**request, "behaviour": "result", "doc": doc}, _entry=[str(ENTRY)], **kwargs)

    monkeypatch.setattr(runner, "run_engine", engine)
    tasks.run_audit.run(audit.pk)
    return Audit.objects.get(pk=audit.pk)


def real_result_with(reference: dict) -> dict:
    doc = json.loads(REAL_RESULT.read_text())
    doc["reference"] = reference
    return doc


def test_a_nan_ratio_drops_the_reference_section_with_the_reason_and_the_audit_is_stored(audit, monkeypatch):
    reference = reference_section()
    reference["per_batch_size"][0]["energy_ratio"] = math.nan
    audit = run_hostile(monkeypatch, audit, real_result_with(reference))
    assert audit.status == Audit.Status.SUCCEEDED and audit.variants.filter(status="succeeded").count() == 4
    assert audit.reference is None
    assert ("the comparison with the reference version was dropped: the engine reported an invalid figure: "
            "reference.per_batch_size[0].energy_ratio = nan (Input should be a finite number)") in audit.warnings


def test_a_valid_reference_section_is_stored_without_keys_the_schema_does_not_name(audit, monkeypatch):
    reference = reference_section()
    reference["per_batch_size"][0]["onclick"] = "alert(1)"
    reference["script"] = "<script>"
    audit = run_hostile(monkeypatch, audit, real_result_with(reference))
    assert audit.reference["status"] == "compared" and audit.reference["label"] == "v6 (approved)"
    row = audit.reference["per_batch_size"][0]
    assert (row["energy_ratio"], row["energy_ratio_ci95"], row["verdict"]) == (1.12, [1.05, 1.19], "costs more")
    assert "onclick" not in row and "script" not in audit.reference
    assert audit.reference["fidelity"] == {"metric": "top1_agreement", "value": 0.97, "higher_is_better": True}


@pytest.mark.parametrize("break_it, reason", [
    (lambda r: r["per_batch_size"][0].update(verdict="higher"), "reference.per_batch_size[0].verdict = 'higher'"),
    (lambda r: r["per_batch_size"][0].update(latency_ratio_ci95=[1.0]), "latency_ratio_ci95 = a list of 1 entries"),
    (lambda r: r.update(status="maybe"), "reference.status = 'maybe'"),
    (lambda r: r["per_batch_size"][0].update(energy_ratio=math.inf), "energy_ratio = inf"),
])
def test_the_store_drops_a_malformed_reference_from_any_caller_and_keeps_the_audit(team, break_it, reason):
    reference = reference_section()
    break_it(reference)
    audit = make_audit(team)
    claim = services.audit_claim(audit_id=audit.pk, hostname="w1")
    assert services.audit_store_result(audit_id=audit.pk, attempt=claim.attempt,
                                       result=result_with_reference(reference))
    audit.refresh_from_db()
    assert audit.status == Audit.Status.SUCCEEDED and audit.reference is None
    assert any(w.startswith("the comparison with the reference version was dropped") and reason in w
               for w in audit.warnings), audit.warnings


def test_a_refused_comparison_is_stored_with_its_reason(team):
    audit = make_audit(team)
    claim = services.audit_claim(audit_id=audit.pk, hostname="w1")
    refused = reference_section([], status="refused", reason="the inputs differ: 1x64 against 1x32", fidelity=False)
    services.audit_store_result(audit_id=audit.pk, attempt=claim.attempt, result=result_with_reference(refused))
    audit.refresh_from_db()
    assert audit.reference["status"] == "refused" and audit.reference["reason"].startswith("the inputs differ")
    assert audit.warnings == []


def test_a_fidelity_without_a_headline_figure_keeps_the_comparison(team):
    audit = make_audit(team)
    claim = services.audit_claim(audit_id=audit.pk, hostname="w1")
    reference = reference_section()
    reference["fidelity"] = {"metric": None, "value": None, "higher_is_better": True}
    services.audit_store_result(audit_id=audit.pk, attempt=claim.attempt, result=result_with_reference(reference))
    audit.refresh_from_db()
    assert audit.reference["status"] == "compared" and audit.reference["fidelity"]["value"] is None
