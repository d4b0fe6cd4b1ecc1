"""A real schema-2 engine result (paired rounds, quality grades, fidelity without labels,
carbon provenance) is stored whole; a throughput-mode measurement (no per-call percentiles)
stores too."""
import pytest

from audit.models import Evaluation, Measurement, Variant
from audit.services import audits as services
from tests.engine import models as m

from .factories import make_audit, measurement_doc, result_doc

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def engine_doc(tmp_path_factory):
    from workers.engine.profile import profile_model

    path = m.save_safetensors(tmp_path_factory.mktemp("m") / "mlp.safetensors", "mlp", m.MLP_CONFIG)
    return profile_model(path, recipes=("baseline", "int8-dynamic"), batch_sizes=(1, 4),
                         options=dict(m.FAST_OPTIONS, rounds=2, latency_target_ms_p95=1000.0))


def _store(team, doc):
    audit = make_audit(team)
    claim = services.audit_claim(audit_id=audit.pk, hostname="w1")
    assert services.audit_store_result(audit_id=audit.pk, attempt=claim.attempt, result=doc)
    audit.refresh_from_db()
    return audit


def test_a_real_schema2_result_keeps_its_evidence(team, engine_doc):
    audit = _store(team, engine_doc)
    assert audit.status == "succeeded" and audit.schema_version == 2
    assert audit.quality_grade in "ABCD" and audit.quality_grade and audit.quality_reasons is not None
    assert audit.scenario["kind"] == "forward"
    assert audit.carbon["region"] == "WORLD" and audit.carbon["intensity_g_per_kwh"] == 481.0
    assert audit.tradeoff is not None
    # energy against latency over the batch sizes, and the cheapest setting within the target
    frontier = {v["recipe"]: v for v in audit.frontier["variants"]}
    assert len(frontier["baseline"]["points"]) == 2 and frontier["baseline"]["target"]["limit_ms"] == 1000.0
    assert frontier["baseline"]["cheapest"]["batch_size"] in (1, 4) and "cheapest" in frontier["baseline"]["reason"]
    int8 = Variant.objects.get(audit=audit, recipe="int8-dynamic")
    assert [c["batch_size"] for c in int8.comparison] == [1, 4]
    for row in Measurement.objects.filter(variant=int8):
        lo, hi = row.comparison["energy_ratio_ci95"]
        assert 0 < lo <= row.comparison["energy_ratio"] <= hi
        assert row.quality_grade in "ABCD" and row.quality_grade
        assert len(row.window_means_ms) == row.windows
        assert row.energy_assumptions["w_per_core"] > 0  # an estimate says what it assumed
    assert int8.details == {"dtype": "float32", "stored_dtype": "float32", "baseline_dtype": "float32"}
    base = Measurement.objects.filter(variant__recipe="baseline").first()
    assert base.comparison is None
    evaluation = Evaluation.objects.get(variant=int8)
    assert evaluation.labelled is False and evaluation.metric == "" and evaluation.value is None
    assert evaluation.fidelity_metric and 0.5 < evaluation.fidelity_value <= 1.0


def test_throughput_mode_measurement_without_percentiles_is_stored(team):
    doc = result_doc()
    doc["variants"][0]["measurements"] = [measurement_doc(
        1, timing_mode="throughput", latency_ms_std=None, latency_ms_p50=None, latency_ms_p95=None,
        latency_ms_p99=None, cv=None)]
    _store(team, doc)
    row = Measurement.objects.get()
    assert row.timing_mode == "throughput" and row.latency_p95_ms is None and row.latency_mean_ms > 0


def test_a_generation_measurement_stores_its_token_figures(team):
    doc = result_doc()
    doc["scenario"] = {"kind": "generation", "prompt_tokens": 64, "new_tokens": 32, "backend": "transformers"}
    doc["variants"][0]["measurements"] = [measurement_doc(
        4, scenario="generation", prompt_tokens=64, new_tokens=32, ttft_ms_p50=10.0, ttft_ms_p95=12.0,
        tpot_ms_p50=2.0, tpot_ms_p95=2.5, output_tokens_per_s=1500.0, energy_j_per_prompt_token=0.001,
        energy_j_per_output_token=0.004, energy_j_per_request=0.2, prefill_energy_share=0.3,
        backend="transformers")]
    audit = _store(team, doc)
    row = Measurement.objects.get()
    assert audit.scenario["kind"] == "generation"
    assert (row.scenario, row.new_tokens, row.tpot_ms_p95, row.energy_j_per_output_token) == ("generation", 32, 2.5, 0.004)
