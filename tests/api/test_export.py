"""CSV and JSON export: one row per measurement, units in the column names, the list's filters,
team scoping, and constant memory whatever the row count."""
import csv
import io
import json
import tracemalloc

import pytest
from django.utils import timezone

from audit.api import export
from audit.models import Audit, Measurement, Variant

from ..factories import make_audit
from .helpers import finished_audit, two_variant_result

pytestmark = pytest.mark.django_db


def read_csv(response) -> list[dict]:
    assert response.streaming
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


def test_csv_has_one_row_per_measurement_with_units_in_column_names(api, team, member):
    audit = finished_audit(team, user=member, result=two_variant_result())
    response = api.get("/api/v1/audits/export.csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = read_csv(response)
    assert len(rows) == 3  # baseline at batch 1 and 8, int8 at batch 1
    for column in ("model", "model_version", "variant", "batch_size", "hardware", "hardware_queue", "energy_method",
                   "energy_j_per_inference", "wh_per_1000_inferences", "latency_p50_ms", "latency_p95_ms",
                   "avg_power_w", "co2e_g_per_inference", "throughput_samples_per_s", "flops_per_sample"):
        assert column in rows[0], column
    first = rows[0]
    assert first["audit_id"] == str(audit.pk) and first["model"] == "digits-mlp"
    assert first["variant"] == "baseline" and first["batch_size"] == "1"
    assert float(first["energy_j_per_inference"]) == pytest.approx(0.002)
    assert first["energy_method"] == "estimate-tdp" and first["hardware"] == "Test CPU"
    assert [(r["variant"], r["batch_size"]) for r in rows] == [("baseline", "1"), ("baseline", "8"), ("int8-dynamic", "1")]


def test_json_export_is_a_list_of_objects_with_the_same_columns(api, team, member):
    finished_audit(team, user=member, result=two_variant_result())
    response = api.get("/api/v1/audits/export.json")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    rows = json.loads(b"".join(response.streaming_content))
    assert len(rows) == 3 and list(rows[0]) == export.HEADER
    assert rows[0]["latency_p95_ms"] == pytest.approx(0.25)
    assert isinstance(rows[0]["audit_created_at"], str)


def test_export_empty_json_is_valid(api):
    response = api.get("/api/v1/audits/export.json")
    assert json.loads(b"".join(response.streaming_content)) == []


def test_export_applies_the_list_filters_and_team_scope(api, team, other_team, member):
    kept = finished_audit(team, user=member)
    other_model = finished_audit(team, user=member, model_version=make_audit(team).model_version, target_queue="gpu")
    finished_audit(other_team)  # never visible
    Audit.objects.filter(pk=kept.pk).update(review_status="approved")

    def audit_ids(query):
        response = api.get("/api/v1/audits/export.csv" + query)
        assert response.status_code == 200, response.content
        return {int(r["audit_id"]) for r in read_csv(response)}

    assert audit_ids("") == {kept.pk, other_model.pk}
    assert audit_ids("?hardware=gpu") == {other_model.pk}
    assert audit_ids(f"?model_version={kept.model_version_id}") == {kept.pk}
    assert audit_ids("?review_status=approved") == {kept.pk}
    assert audit_ids("?budget_verdict=none") == {kept.pk, other_model.pk}
    assert audit_ids("?status=failed") == set()
    assert audit_ids(f"?created_after={timezone.now().date().isoformat()}") == {kept.pk, other_model.pk}
    bad = api.get("/api/v1/audits/export.csv?status=exploded&created_after=yesterday")
    assert bad.status_code == 400 and set(bad.json()) == {"status", "created_after"}


def seed_measurements(audit: Audit, n: int) -> None:
    variant = Variant.objects.create(audit=audit, position=9, recipe="bulk", status="succeeded")
    template = Measurement.objects.filter(variant__audit=audit).first()
    fields = {f.attname: getattr(template, f.attname) for f in Measurement._meta.concrete_fields if f.attname not in ("id", "variant_id")}
    Measurement.objects.bulk_create(
        [Measurement(**{**fields, "variant_id": variant.pk, "batch_size": i + 1}) for i in range(n)], batch_size=2000
    )


def streamed_peak(client, url: str) -> tuple[int, int]:
    """(rows, peak bytes allocated while the response was produced and consumed)."""
    tracemalloc.start()
    try:
        response = client.get(url)
        rows = 0
        for chunk in response.streaming_content:
            rows += chunk.count(b"\n")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return rows - 1, peak


def test_export_streams_many_rows_in_constant_memory(api, team, member, settings):
    settings.API_EXPORT_CHUNK_SIZE = 500
    audit = finished_audit(team, user=member)
    seed_measurements(audit, 1_000)
    small_rows, small_peak = streamed_peak(api, "/api/v1/audits/export.csv")
    seed_measurements(audit, 7_000)
    large_rows, large_peak = streamed_peak(api, "/api/v1/audits/export.csv")
    assert (small_rows, large_rows) == (1_002, 8_002)
    # Eight times the rows, about the same memory: nothing grows with the row count.
    assert large_peak < small_peak * 1.5 + 256 * 1024, (small_peak, large_peak)
    assert large_peak < 8 * 1024 * 1024


def test_export_uses_values_not_model_instances(monkeypatch, team, member, api):
    """No Measurement object is built per row."""
    finished_audit(team, user=member)
    built = []
    original = Measurement.from_db.__func__

    def spy(cls, *args, **kwargs):
        built.append(1)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(Measurement, "from_db", classmethod(spy))
    rows = read_csv(api.get("/api/v1/audits/export.csv"))
    assert len(rows) == 2 and built == []


def test_export_carries_grades_paired_ratios_and_token_figures(api, team, member):
    from ..factories import measurement_doc

    doc = two_variant_result()
    doc["quality"] = {"grade": "B", "reasons": ["B: interval ±4%"]}
    doc["carbon"] = {"intensity_g_per_kwh": 56.0, "pue": 1.0, "source": "table", "region": "FR"}
    int8 = doc["variants"][1]
    int8["comparison"] = [{"batch_size": 1, "rounds": 3, "energy_ratio": 0.64, "energy_ratio_ci95": [0.61, 0.68],
                           "latency_ratio": 0.7, "latency_ratio_ci95": [0.66, 0.75], "verdict": "lower",
                           "quality_grade": "B", "quality_reasons": []}]
    int8["measurements"] = [measurement_doc(1, quality_grade="B", scenario="generation", new_tokens=32,
                                            energy_j_per_output_token=0.004, tpot_ms_p95=2.5)]
    finished_audit(team, user=member, result=doc)
    rows = json.loads(b"".join(api.get("/api/v1/audits/export.json").streaming_content))
    base, int8_row = rows[0], rows[2]
    assert base["energy_ratio_vs_baseline"] is None and base["audit_quality_grade"] == "B"
    assert (int8_row["energy_ratio_vs_baseline"], int8_row["energy_ratio_ci95_low"], int8_row["energy_ratio_ci95_high"]) == (0.64, 0.61, 0.68)
    assert int8_row["paired_verdict"] == "lower" and int8_row["quality_grade"] == "B"
    assert int8_row["energy_j_per_output_token"] == 0.004 and int8_row["tpot_ms_p95"] == 2.5 and int8_row["new_tokens"] == 32
    assert int8_row["grid_intensity_g_per_kwh"] == 56.0 and int8_row["grid_region"] == "FR"
    csv_rows = read_csv(api.get("/api/v1/audits/export.csv"))
    assert csv_rows[2]["energy_ratio_ci95_high"] == "0.68" and csv_rows[0]["energy_ratio_vs_baseline"] == ""


def test_list_and_exports_filter_inconclusive_budget_verdicts(api, team, member):
    audits = {verdict: finished_audit(team, user=member) for verdict in ("pass", "fail", "inconclusive")}
    for verdict, audit in audits.items():
        Audit.objects.filter(pk=audit.pk).update(budget_verdict=verdict)
    listed = api.get("/api/v1/audits/?budget_verdict=inconclusive")
    assert listed.status_code == 200, listed.content
    assert [a["id"] for a in listed.json()["results"]] == [audits["inconclusive"].pk]
    assert {int(r["audit_id"]) for r in read_csv(api.get("/api/v1/audits/export.csv?budget_verdict=inconclusive"))} == {
        audits["inconclusive"].pk}
    rows = json.loads(b"".join(api.get("/api/v1/audits/export.json?budget_verdict=inconclusive").streaming_content))
    assert {r["audit_id"] for r in rows} == {audits["inconclusive"].pk}
    assert {r["budget_verdict"] for r in rows} == {"inconclusive"}
