"""Numbers that agree with each other (issue 22): a ratio beside a figure says what it divides,
and where the paired ratio parts from the ratio of the figures shown, the page shows both and
why; an audit's energy uncertainty is one figure, the same on the report and the compare page.

The data is a real engine result (the digits MLP on a shared CPU: calls there are heavy-tailed,
the mean call up to 90 times the median, so means and medians, pooled windows and per-round
ratios part, as in the demo's fp16 row)."""
import re
from html import unescape

import pytest
from django.urls import reverse

from audit.models import Measurement

from .test_report_pages import clean
from .test_report_v2 import real_doc, store

pytestmark = pytest.mark.django_db


@pytest.fixture
def audit(team):
    return store(team, real_doc("engine_result_digits_v2.json"))


def _row(page: str, recipe: str) -> str:
    return re.search(rf'<tr class="[^"]*" data-variant="{re.escape(recipe)}">(.*?)</tr>', page, re.S).group(1)


def _ms(audit, recipe, batch):
    return Measurement.objects.get(variant__audit=audit, variant__recipe=recipe, batch_size=batch)


def test_a_paired_ratio_that_parts_from_the_figures_shows_both_and_why(member_client, audit):
    page = member_client.get(audit.get_absolute_url() + "?batch=8").content.decode()
    clean(page)
    row = _row(page, "prune-unstructured:0.5")
    base, var = _ms(audit, "baseline", 8), _ms(audit, "prune-unstructured:0.5", 8)
    # the figures shown: energy per inference and latency p50 of both rows
    energy_figures = var.energy_j_per_inference / base.energy_j_per_inference
    latency_figures = var.latency_p50_ms / base.latency_p50_ms
    assert f"×{energy_figures:.2f}" == "×1.26" and f"×{latency_figures:.2f}" == "×1.01"
    # the paired ratios (×1.94 energy, ×1.86 latency) stay, each titled with what it divides
    assert "×1.94 [" in row and "×1.86 [" in row
    titles = [unescape(t) for t in re.findall(r'class="paired-ratio" title="([^"]+)"', row)]
    assert len(titles) == 2
    assert "over 6 interleaved rounds" in titles[0] and "energy per call" in titles[0]
    assert "mean time per call" in titles[1]
    # and under each, the ratio of the figures shown
    assert "figures: ×1.26" in row and "figures: ×1.01" in row
    # the list under the table says why, in words a printed page keeps
    notes = re.search(r'<ul class="small muted" id="ratio-notes">(.*?)</ul>', page, re.S).group(1)
    energy = re.search(r'data-variant="prune-unstructured:0.5" data-kind="energy">(.*?)</li>', notes, re.S).group(1)
    latency = re.search(r'data-variant="prune-unstructured:0.5" data-kind="latency">(.*?)</li>', notes, re.S).group(1)
    assert "ratio of the figures shown ×1.26" in energy and "pool every window of each row (baseline 7, variant 6)" in energy
    assert "weighs each of its 6 rounds alike" in energy and "busy host" in energy
    assert "medians (p50) of single calls" in latency and "mean time per call" in latency
    assert "heavy-tailed" in latency  # this host's mean call is ~29x its median
    # the column heads and the caption say which ratio is which
    assert "Energy ratio, paired [95%]" in page and "Latency ratio of means, paired [95%]" in page


def test_ratios_that_agree_carry_no_second_figure(member_client, audit):
    """At batch 1 the energy ratio of the figures and the paired one agree (×1.10 both ways for
    prune-unstructured): no "figures shown" line for it."""
    page = member_client.get(audit.get_absolute_url() + "?batch=1").content.decode()
    row = _row(page, "prune-unstructured:0.5")
    assert "×1.10 [" in row
    energy_cell = row[row.index("×1.10 ["):row.index("×1.10 [") + 400]
    assert "figures: ×1.1" not in energy_cell
    notes = page[page.find('id="ratio-notes"'):]
    assert 'data-variant="prune-unstructured:0.5" data-kind="energy"' not in notes


def test_compare_gives_one_pair_of_rows_one_paired_ratio(member_client, team, audit):
    """Energy per sample and per inference of the same two rows at the same batch size are the same
    ratio: the compare page showed ×0.63 beside ×0.85 [0.47, 1.55] for the same 342 mJ."""
    other = store(team, real_doc("engine_result_digits_v2.json"))
    url = reverse("compare") + f"?a={audit.pk}&a={other.pk}&x=energy_per_sample&y=energy"
    page = member_client.get(url).content.decode()
    clean(page)
    heads = re.search(r'<table id="compare-variants".*?</thead>', page, re.S).group(0)
    names = re.findall(r'<th class="num">([^<]+)</th>', heads)
    i_sample, i_inference = names.index("Energy per sample (J)"), names.index("Energy per inference (J)")
    row = re.search(rf'data-row="{audit.pk}:fp16">(.*?)</tr>', page, re.S).group(1)
    cells = re.findall(r'<td class="num">(.*?)</td>', row, re.S)  # the batch column first, as in the heads
    sample, inference = cells[i_sample], cells[i_inference]
    change = re.compile(r'<span class="delta[^"]*" title="([^"]+)">([^<]+)<sup>p</sup></span>')
    (t1, r1), (t2, r2) = change.search(sample).groups(), change.search(inference).groups()
    assert r1 == r2 and r1.startswith("×") and "[" in r1  # one paired ratio with its interval
    assert "paired ratio" in unescape(t1) and "interleaved rounds" in unescape(t1) and t1 == t2
    # a variant of the other audit against this reference: separate audits, the figures' ratio
    row_other = re.search(rf'data-row="{other.pk}:fp16">(.*?)</tr>', page, re.S).group(1)
    assert "ratio of the figures shown" in unescape(row_other) and "<sup>p</sup>" not in row_other
    assert 'id="compare-ratio-key"' in page


def test_energy_uncertainty_is_one_figure_on_report_and_compare(member_client, team, audit):
    largest = max(Measurement.objects.filter(variant__audit=audit).values_list("energy_uncertainty_rel", flat=True))
    baseline_ref = _ms(audit, "baseline", 1).energy_uncertainty_rel
    assert f"{largest:.0%}" != f"{baseline_ref:.0%}"  # the two definitions the pages used differed here
    expected = f"±{largest * 100:.0f}%"
    report = member_client.get(audit.get_absolute_url()).content.decode()
    badge = re.search(r'<span class="badge" id="energy-uncertainty" title="([^"]+)">energy (±\d+%) \(1σ\)</span>', report)
    assert badge.group(2) == expected
    title = unescape(badge.group(1))
    assert "largest relative standard uncertainty (1σ)" in title and "every variant at every batch size" in title
    other = store(team, real_doc("engine_result_digits_v2.json"))
    compare = member_client.get(reverse("compare") + f"?a={audit.pk}&a={other.pk}").content.decode()
    shown = re.findall(r'<span class="energy-uncertainty" title="([^"]+)">(±\d+%) \(1σ\)</span>', compare)
    assert [s[1] for s in shown] == [expected, expected]
    assert unescape(shown[0][0]) == title


def test_a_summary_card_says_when_its_paired_change_parts_from_its_figures(member_client, team):
    """The recommended variant's card shows its figure beside the paired ratio: when they part,
    the card says what the change divides and what the figures divide to."""
    from .test_report_v2 import with_paired

    doc = with_paired(real_doc("engine_result_digits_v2.json"), "prune-unstructured:0.5",
                      ratio=0.64, ci=(0.61, 0.68), verdict="lower")
    audit = store(team, doc)
    page = member_client.get(audit.get_absolute_url()).content.decode()
    kpi = re.search(r'id="kpi-j-per-inference">(.*?)</div>\s*</div>', page, re.S).group(1)
    base, var = _ms(audit, "baseline", 1), _ms(audit, "prune-unstructured:0.5", 1)
    figures = var.energy_j_per_inference / base.energy_j_per_inference
    assert "×0.64 [0.61, 0.68]" in kpi
    assert (f"paired ratio of each round's energy per call; the figures shown divide to ×{figures:.2f}"
            in unescape(kpi))
