"""A serving audit's report (issue 20): every figure per variant and load level, the paired
ratio per level, the answer within the SLO (or the nearest miss), and the charts with SLO lines."""
import json
from pathlib import Path

import pytest
from django.utils.html import escape

from audit.models import Audit
from audit.services import audits as services
from workers.runner import accept_result
from workers.result_schema import check_result

from ..factories import make_audit
from .test_report_pages import clean, figures_in

pytestmark = pytest.mark.django_db
DATA = Path(__file__).parent / "data" / "engine_result_gpt2_serving.json"


def serving_result() -> dict:
    """`python -m workers.engine profile gpt2-tiny --workload wl16.jsonl --concurrency 1,4
    --request-rate 40 --recipes baseline,fp16,int8-dynamic
    --slo-ttft-ms-p95 1000 --slo-tpot-ms-p95 1000` (a 2-layer GPT-2 built from a config, 16 requests
    of 4-27 prompt and 3-16 new tokens, targets every configuration meets)."""
    return json.loads(DATA.read_text())


def stored_serving_audit(team, options: dict) -> Audit:
    """Stored the way the worker stores it: checked, then the answer derived with the audit's options."""
    audit = make_audit(team, device="cpu", options=options)
    asset = audit.model_version.asset
    asset.task, asset.name = "language-modeling", "gpt2-tiny"
    asset.save()
    claim = services.audit_claim(audit_id=audit.pk, hostname="w1")
    doc = accept_result(check_result(serving_result()), {"options": options, "device": "cpu"})
    services.audit_store_result(audit_id=audit.pk, attempt=claim.attempt, result=doc)
    return Audit.objects.get(pk=audit.pk)


def _figures(variant_name: str, doc: dict) -> list[dict]:
    return next(v for v in doc["variants"] if v["recipe"] == variant_name)["serving"]


def test_serving_report_shows_every_figure_per_variant_and_level(member_client, team):
    audit = stored_serving_audit(team, {"slo_tpot_ms_p95": 1000.0, "slo_ttft_ms_p95": 1000.0})
    page = member_client.get(audit.get_absolute_url()).content.decode()
    clean(page)
    section = page[page.index('id="serving"'):]
    for header in ("Load", "TTFT p50 / p95 / p99", "TPOT p50 / p95 / p99", "ITL p95", "E2E p95", "Requests/s",
                   "Output tokens/s (aggregate)", "J per output token", "J per request", "Goodput",
                   "J per good token", "Energy vs baseline (paired)"):
        assert header in section, header
    doc = serving_result()
    for recipe in ("baseline", "fp16", "int8-dynamic"):
        assert section.count(f'data-serving-variant="{recipe}"') == 3  # concurrency 1, 4 and 40 requests/s
    assert "concurrency 1" in section and "concurrency 4" in section and "40 requests/s" in section
    base_c1 = _figures("baseline", doc)[0]
    assert f"{base_c1['output_tokens_per_s']:.1f}" in section
    # the workload and the steady windows are said, with the attribution rule
    assert "16 requests" in section and "steady window" in section and "by tokens" in section
    # the work a request does over this workload, not one forward pass at a default length
    workload = doc["scenario"]["workload"]
    assert workload["flops_per_request"] > workload["flops_per_output_token"] > 0
    assert 'id="serving-flops"' in section and "per output token" in section
    # with targets every configuration meets, the answer is the cheapest, with its paired evidence
    answer = audit.tradeoff["serving"]
    assert answer["cheapest"] is not None and "cheapest meeting" in answer["reason"]
    assert escape(answer["reason"]) in page
    figs = json.loads(figures_in(page, "report-figures"))
    for chart in ("chart-serving-frontier", "chart-serving-ttft", "chart-serving-tpot", "chart-serving-itl"):
        assert chart in figs and f'id="{chart}"' in page
    # hovers in the page's units: "2.74 mJ per output token", never plotly's "0.00274 J"
    frontier_hovers = [h for trace in figs["chart-serving-frontier"]["data"] for h in trace["hovertext"]]
    assert all(" mJ per output token" in h or " µJ per output token" in h for h in frontier_hovers)


def test_serving_report_names_the_nearest_miss_and_draws_the_slo(member_client, team):
    audit = stored_serving_audit(team, {"slo_tpot_ms_p95": 0.001, "slo_ttft_ms_p95": 40.0})
    page = member_client.get(audit.get_absolute_url()).content.decode()
    answer = audit.tradeoff["serving"]
    assert answer["cheapest"] is None and answer["nearest"] is not None
    assert "no configuration meets TTFT p95 <= 40 ms and TPOT p95 <= 0.001 ms" in answer["reason"]
    assert "the nearest is" in page and "misses by" in page
    figs = json.loads(figures_in(page, "report-figures"))
    tpot_lines = [s for s in figs["chart-serving-tpot"]["layout"].get("shapes", []) if s.get("type") == "line"]
    assert any(abs(s["y0"] - 0.001) < 1e-9 for s in tpot_lines)  # the TPOT target drawn
    ttft_lines = [s for s in figs["chart-serving-ttft"]["layout"].get("shapes", []) if s.get("type") == "line"]
    assert any(abs(s["y0"] - 40.0) < 1e-9 for s in ttft_lines)


def test_serving_export_and_api_carry_the_level_figures(member_client, team):
    audit = stored_serving_audit(team, {})
    body = member_client.get(f"/api/v1/audits/{audit.pk}/").json()
    variants = {v["recipe"]: v for v in body["variants"]}
    levels = variants["fp16"]["serving"]
    assert [lv.get("concurrency") or lv.get("request_rate") for lv in levels] == [1, 4, 40.0]
    for key in ("ttft_ms_p99", "tpot_ms_p95", "itl_ms_p95", "e2e_ms_p50", "requests_per_s", "output_tokens_per_s",
                "energy_j_per_output_token", "energy_j_per_request", "goodput_requests_per_s",
                "energy_j_per_good_token"):
        assert key in levels[0], key
    assert [c.get("concurrency") or c.get("request_rate") for c in variants["fp16"]["serving_comparison"]] == [1, 4, 40.0]
