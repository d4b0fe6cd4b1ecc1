"""Issue 21: the report leads with the comparison against the reference version, and the
model's history marks the versions compared so and draws the chain of paired ratios."""
import json
import re

import pytest

from audit.models import Audit
from audit.services import audits as services

from ..api.helpers import reference_row, reference_section, result_with_reference
from ..factories import make_audit, make_version

pytestmark = pytest.mark.django_db


def audited(team, version, reference=None, *, reference_version=None, result=True) -> Audit:
    audit = make_audit(team, model_version=version, reference_version=reference_version)
    if not result:
        return audit
    claim = services.audit_claim(audit_id=audit.pk, hostname="w1")
    doc = result_with_reference(reference) if reference is not None else result_with_reference()
    if reference is False:
        doc.pop("reference")
    services.audit_store_result(audit_id=audit.pk, attempt=claim.attempt, result=doc)
    return Audit.objects.get(pk=audit.pk)


def text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def section(page: str, ident: str) -> str:
    start = page.index(f'id="{ident}"')
    return page[start:page.index("</section>", start)]


def test_the_report_leads_with_the_comparison_per_batch_size_with_its_grade(member_client, team):
    v6, v7 = make_version(team, label="v6"), make_version(team, label="v7")
    rows = [reference_row(1), reference_row(8, energy=(0.97, 0.95, 0.99), latency=(1.0, 0.98, 1.02),
                                            verdict="costs less", grade="C")]
    audit = audited(team, v7, reference_section(rows), reference_version=v6)
    page = member_client.get(audit.get_absolute_url()).content.decode()
    assert page.index('id="release"') < page.index('id="answer"')  # it leads the report
    lead = text(section(page, "release"))
    assert "v7 vs v6 (approved): energy ×1.12 [1.05, 1.19], latency ×1.03 [0.98, 1.08]: costs more" in lead
    assert "v7 vs v6 (approved): energy ×0.97 [0.95, 0.99], latency ×1.00 [0.98, 1.02]: costs less" in lead
    assert "grade B" in lead and "grade C" in lead
    assert "per inference" in lead and "Inputs: the same inputs (shape 1x64)" in lead
    assert "top-1 agreement 0.97 against the reference" in lead and "not judged" in lead
    assert 'id="release-verdict">costs more<' in page  # the worst batch size is the audit's answer


def test_a_refused_comparison_says_why_and_shows_no_ratio(member_client, team):
    v6, v7 = make_version(team, label="v6"), make_version(team, label="v7")
    refused = reference_section([], status="refused", reason="the inputs differ: v7 takes 1x32, v6 takes 1x64",
                                fidelity=False)
    audit = audited(team, v7, refused, reference_version=v6)
    lead = text(section(member_client.get(audit.get_absolute_url()).content.decode(), "release"))
    assert "v7 vs v6 (approved): refused: the inputs differ: v7 takes 1x32, v6 takes 1x64" in lead
    assert "×" not in lead and "not compared" in lead


def test_a_dropped_section_and_a_queued_audit_say_so(member_client, team):
    v6, v7 = make_version(team, label="v6"), make_version(team, label="v7")
    broken = reference_section()
    broken["per_batch_size"][0]["verdict"] = "higher"  # not one of the four: dropped with a warning
    dropped = audited(team, v7, broken, reference_version=v6)
    page = member_client.get(dropped.get_absolute_url()).content.decode()
    assert "the comparison&#x27;s result was not stored (see the warnings)" in page
    queued = make_audit(team, model_version=v7, reference_version=v6, options={"batch_sizes": [1],
                                                                              "reference_label": "v6 (approved)"})
    page = member_client.get(queued.get_absolute_url()).content.decode()
    assert "v7 vs v6 (approved): measured in the same rounds once the audit runs." in text(section(page, "release"))


def test_an_audit_without_a_reference_has_no_lead(member_client, team):
    audit = audited(team, make_version(team, label="v1"), False)
    assert 'id="release"' not in member_client.get(audit.get_absolute_url()).content.decode()


def test_history_marks_the_paired_versions_and_draws_the_chain_of_ratios(member_client, team):
    v5, v6, v7 = (make_version(team, label=label) for label in ("v5", "v6", "v7"))
    audited(team, v5, False)
    audited(team, v6, reference_section([reference_row(1, energy=(0.9, 0.85, 0.95), verdict="costs less")],
                                        label="v5"), reference_version=v5)
    audited(team, v7, reference_section([reference_row(1)]), reference_version=v6)
    page = member_client.get(f"/models/{v7.asset_id}/history/").content.decode()
    table = page[page.index('id="history-table"'):page.index("</table>")]
    rows = {re.search(r"<td>(v\d)", r).group(1): r for r in table.split("<tr>")[2:]}
    assert "paired" not in rows["v5"] and "paired-mark" in rows["v6"] and "paired-mark" in rows["v7"]
    assert "v7 vs v6 (approved): energy ×1.12 [1.05, 1.19]" in rows["v7"]
    figures = json.loads(re.search(r'id="release-figures" type="application/json">(.*?)</script>', page).group(1))
    [trace] = figures["chart-release-energy"]["data"]
    assert trace["x"] == ["v6", "v7"] and trace["y"] == [0.9, 1.12]
    assert trace["error_y"]["array"] == pytest.approx([0.05, 0.07])
    assert trace["error_y"]["arrayminus"] == pytest.approx([0.05, 0.07])
    assert trace["text"] == ["vs v5", "vs v6 (approved)"]
    assert figures["chart-release-energy"]["layout"]["xaxis"]["ticktext"] == ["v6<br>vs v5", "v7<br>vs v6 (approved)"]
    assert figures["chart-release-latency"]["data"][0]["y"] == [1.03, 1.03]
    assert 'id="chart-release-energy"' in page


def test_history_without_any_pairing_says_so_in_its_chart(member_client, team):
    audited(team, make_version(team, label="v1"), False)
    page = member_client.get(f"/models/{Audit.objects.get().model_version.asset_id}/history/").content.decode()
    figures = json.loads(re.search(r'id="release-figures" type="application/json">(.*?)</script>', page).group(1))
    assert figures["chart-release-energy"]["data"] == []
    assert "No version was audited against a reference version yet." in json.dumps(figures)
