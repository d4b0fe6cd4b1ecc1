"""docs/API.md documents every exported column, in the CSV's order, and the export carries each
variant's accuracy and fidelity; the budget fields the API takes are documented too."""
import csv
import io
import json
import re
from pathlib import Path

import pytest

from audit.models import Evaluation, Variant

from ..factories import make_audit
from .helpers import add_accuracy, finished_audit, two_variant_result

pytestmark = pytest.mark.django_db

API_MD = Path(__file__).resolve().parents[2] / "docs" / "API.md"


def _section(title: str) -> str:
    text = API_MD.read_text()
    start = text.index(f"### {title}\n")
    end = text.find("\n### ", start + 1)
    return text[start:end if end != -1 else None]


def documented_columns() -> list[str]:
    """The first cell of each row of the Export section's column table."""
    return re.findall(r"^\| `([a-z0-9_]+)` \|", _section("Export"), re.M)


def exported_header(api) -> list[str]:
    response = api.get("/api/v1/audits/export.csv")
    assert response.status_code == 200
    body = b"".join(response.streaming_content).decode()
    return next(csv.reader(io.StringIO(body)))


def test_docs_list_every_exported_column_in_the_csv_order(api, team, member):
    finished_audit(team, user=member, result=two_variant_result())
    header = exported_header(api)
    documented = documented_columns()
    assert len(header) > 60
    missing = [c for c in header if c not in documented]
    stale = [c for c in documented if c not in header]
    assert not missing and not stale, f"undocumented: {missing}; documented but not exported: {stale}"
    assert documented == header  # the same order


def test_export_carries_accuracy_and_fidelity_per_variant(api, team, member):
    audit = finished_audit(team, user=member, result=two_variant_result())
    add_accuracy(audit, {"baseline": 0.962, "int8-dynamic": 0.955})
    int8 = Variant.objects.get(audit=audit, recipe="int8-dynamic")
    Evaluation.objects.filter(variant=int8).update(fidelity_metric="top1_agreement", fidelity_value=0.985)
    make_audit(team, requested_by=member)  # queued: no measurement, no row

    rows = json.loads(b"".join(api.get("/api/v1/audits/export.json").streaming_content))
    assert {r["audit_id"] for r in rows} == {audit.pk}
    by = {(r["variant"], r["batch_size"]): r for r in rows}
    assert by[("baseline", 1)]["accuracy_metric"] == "accuracy" and by[("baseline", 1)]["accuracy_value"] == 0.962
    assert by[("baseline", 8)]["accuracy_value"] == 0.962  # the variant's, on each of its rows
    assert by[("baseline", 1)]["fidelity_metric"] is None and by[("baseline", 1)]["fidelity_value"] is None
    assert by[("int8-dynamic", 1)]["accuracy_value"] == 0.955
    assert by[("int8-dynamic", 1)]["fidelity_metric"] == "top1_agreement"
    assert by[("int8-dynamic", 1)]["fidelity_value"] == 0.985

    text = b"".join(api.get("/api/v1/audits/export.csv").streaming_content).decode()
    (row,) = [r for r in csv.DictReader(io.StringIO(text)) if r["variant"] == "int8-dynamic"]
    assert (row["accuracy_metric"], row["accuracy_value"], row["fidelity_metric"], row["fidelity_value"]) == (
        "accuracy", "0.955", "top1_agreement", "0.985")


def test_docs_list_every_budget_field_the_api_takes():
    from audit.api.serializers import BudgetSerializer
    from audit.services.budgets import LIMIT_FIELDS

    documented = re.findall(r"^\| `([a-z0-9_]+)` \|", _section("Energy budgets"), re.M)
    assert sorted(documented) == sorted(LIMIT_FIELDS)
    assert set(LIMIT_FIELDS) <= set(BudgetSerializer.Meta.fields)
    for generation_limit in ("max_j_per_output_token", "max_ttft_ms_p95", "max_tpot_ms_p95"):
        assert generation_limit in documented
