"""The engine child's result is untrusted input (issue 19, item 3): a child taken over by its
model writes whatever JSON it likes. These run the real worker path (workers.tasks.run_audit,
the real sandbox and line reader) with a hostile child that sends a real engine result
(tests/reports/data) with one part made hostile."""
import json
import math
import socket
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from audit.models import Audit, Measurement, Variant
from audit.services import audits as services
from workers import result_schema, runner, tasks
from workers.engine import ENGINE_VERSION
from workers.engine.sandbox import sandbox_mode
from workers.engine.supervise import run_engine

from ..factories import make_version

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_dispatch")]

ROOT = Path(__file__).resolve().parents[2]
ENTRY = Path(__file__).with_name("hostile_child_entry.py")
REAL_RESULT = ROOT / "tests" / "reports" / "data" / "engine_result_digits_v2.json"




@pytest.fixture
def audit(member, team):
    """Requested as a user does: the audit's options carry the team's carbon basis."""
    return services.audit_request(user=member, model_version=make_version(team), batch_sizes=[1, 8, 32],
                                  recipes=["baseline", "int8-dynamic", "fp16", "prune-unstructured:0.5"])


@pytest.fixture
def hostile(monkeypatch):
    """Make the worker's engine run the hostile child, sending ``doc``."""

    def use(doc: dict, behaviour: str = "result", **extra) -> None:
        def engine(request, **kwargs):
            return run_engine({**request, "behaviour": behaviour, "doc": doc, **extra}, _entry=[str(ENTRY)], **kwargs)

        monkeypatch.setattr(runner, "run_engine", engine)

    return use


def real_result() -> dict:
    return json.loads(REAL_RESULT.read_text())


def run(audit: Audit) -> Audit:
    tasks.run_audit.run(audit.pk)
    return Audit.objects.get(pk=audit.pk)


def api_as(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user=user)
    return client


def test_a_nan_figure_fails_its_variant_with_the_reason_and_the_rest_is_stored(audit, hostile, member, lead):
    doc = real_result()
    doc["variants"][2]["measurements"][0]["energy_j_per_inference"] = math.nan
    hostile(doc)
    audit = run(audit)
    assert audit.status == Audit.Status.SUCCEEDED
    variants = {v.recipe: v for v in audit.variants.all()}
    bad = variants["fp16"]
    assert bad.status == "failed" and not bad.measurements.exists()
    assert bad.error == ("the engine reported an invalid figure: variants[2].measurements[0].energy_j_per_inference "
                         "= nan (Input should be a finite number)")
    assert [variants[r].status for r in ("baseline", "int8-dynamic", "prune-unstructured:0.5")] == ["succeeded"] * 3
    assert Measurement.objects.filter(variant__audit=audit).count() == 9
    # the pages and budget checks that read every audit of the team still answer
    assert api_as(member).get(f"/api/v1/audits/{audit.pk}/").status_code == 200
    created = api_as(lead).post("/api/v1/budgets/", {"name": "tiny", "max_j_per_inference": 0.001}, format="json")
    assert created.status_code == 201, created.content[:500]


@pytest.mark.parametrize("figure, value, shown", [
    ("latency_ms_p95", math.inf, "inf (Input should be a finite number)"),
    ("energy_j_per_inference", -0.5, "-0.5 (Input should be greater than or equal to 0)"),
    ("avg_power_w", 5e6, "5000000.0 (Input should be less than or equal to 100000)"),
])
def test_infinite_negative_or_impossible_figures_fail_their_variant(audit, hostile, figure, value, shown):
    doc = real_result()
    doc["variants"][1]["measurements"][2][figure] = value
    hostile(doc)
    audit = run(audit)
    bad = audit.variants.get(recipe="int8-dynamic")
    assert bad.status == "failed"
    assert bad.error == f"the engine reported an invalid figure: variants[1].measurements[2].{figure} = {shown}"
    assert audit.status == Audit.Status.SUCCEEDED and audit.variants.filter(status="succeeded").count() == 3


def test_a_long_string_or_a_100k_entry_list_fails_its_variant_and_is_not_stored(audit, hostile):
    doc = real_result()
    doc["variants"][0]["notes"] = ["x" * 1_000_000]
    doc["variants"][3]["measurements"][0]["power_trace"] = [[0.1 * i, 10.0] for i in range(100_000)]
    hostile(doc)
    audit = run(audit)
    variants = {v.recipe: v for v in audit.variants.all()}
    assert variants["baseline"].status == "failed"
    assert variants["baseline"].error.startswith("the engine reported an invalid value: variants[0].notes[0] = 'xxx")
    assert "(1000000 characters)" in variants["baseline"].error and len(variants["baseline"].error) < 300
    assert variants["prune-unstructured:0.5"].error == (
        "the engine reported an invalid value: variants[3].measurements[0].power_trace = a list of 100000 entries "
        "(List should have at most 10000 items after validation, not 100000)")
    assert audit.status == Audit.Status.SUCCEEDED
    with connection.cursor() as cursor:  # nothing that large reached a row
        cursor.execute("SELECT max(length(notes::text)), max(length(error)) FROM audit_variant")
        assert max(cursor.fetchone()) < 10_000


def test_a_20_mb_string_fails_the_audit_and_reaches_no_row(audit, hostile):
    doc = real_result()
    doc["warnings"] = ["x" * 20_000_000]
    hostile(doc)
    audit = run(audit)
    assert audit.status == Audit.Status.FAILED and len(audit.error) < 1000
    assert not audit.variants.exists() and len(json.dumps(audit.warnings)) < 1000


def test_a_result_over_the_size_limit_is_refused_whole(audit, hostile):
    """Each part within its bounds, the whole over 8 MiB (a result is ~60 KB)."""
    doc = real_result()
    for v in doc["variants"]:
        v["notes"] = ["n" * 4000] * 256
        for m in v["measurements"]:
            m["power_trace"] = [[0.123456789012345 * i, 10.123456789012345] for i in range(10_000)]
    hostile(doc)
    audit = run(audit)
    assert audit.status == Audit.Status.FAILED and not audit.variants.exists()
    assert audit.error.startswith("The measurement's result was refused: the engine's result is ")
    assert audit.error.endswith(" bytes, over the limit of 8388608 bytes")


def test_a_malformed_audit_level_part_fails_the_audit_with_the_reason(audit, hostile):
    doc = real_result()
    doc["drift"]["max_abs_rel_change"] = math.nan
    hostile(doc)
    audit = run(audit)
    assert audit.status == Audit.Status.FAILED
    assert audit.error == ("The measurement's result was refused: the engine reported an invalid figure: "
                           "drift.max_abs_rel_change = nan (Input should be a finite number)")
    assert not audit.variants.exists()


def test_a_huge_warning_list_fails_the_audit(audit, hostile):
    doc = real_result()
    doc["warnings"] = ["w"] * 100_000
    hostile(doc)
    audit = run(audit)
    assert audit.status == Audit.Status.FAILED
    assert "warnings = a list of 100000 entries" in audit.error


def test_what_the_worker_knows_is_the_worker_s_word_not_the_child_s(audit, hostile):
    doc = real_result()
    doc["sandbox"] = {"mode": "none", "detail": "no sandbox at all, trust me"}
    doc["fingerprint"].update(hostname="not-this-host", cpu_model="Imaginary 9000", ram_bytes=1, threads=2)
    doc["carbon"] = {"intensity_g_per_kwh": 0.0, "pue": 1.0, "source": "the child", "region": "NOWHERE",
                     "source_url": "javascript:alert(document.cookie)", "licence": "none"}
    doc["power_sweep"] = {"steps_w": [1.0], "restored": True}
    doc["tradeoff"]["per_batch_size"][0]["recommended"] = "fp16"
    doc["quality"] = {"grade": "A", "reasons": []}
    doc["engine_version"] = "9.9-forged"
    for v in doc["variants"]:
        v["layer_profile"][0]["onclick"] = "alert(1)"  # a key the schema does not know
        for m in v["measurements"]:
            m["co2e_g_per_inference"] = 0.0
    hostile(doc)
    audit = run(audit)
    assert audit.status == Audit.Status.SUCCEEDED
    assert audit.sandbox["mode"] == sandbox_mode() and "trust me" not in audit.sandbox["detail"]
    assert audit.fingerprint["hostname"] == socket.gethostname()
    assert audit.fingerprint["cpu_model"] != "Imaginary 9000" and audit.fingerprint["ram_bytes"] > 1
    assert audit.fingerprint["threads"] == 2  # only the child knows the threads it ran
    options = audit.options
    assert audit.carbon == {"intensity_g_per_kwh": options["grid_intensity_g_per_kwh"], "pue": options["pue"],
                            "source": options["carbon_source"], "region": options["carbon_region"],
                            "year": options["carbon_year"], "kind": options["carbon_kind"],
                            "licence": options["carbon_licence"], "source_url": options["carbon_source_url"],
                            # whether the PUE was set, from the audit's options (issue 23)
                            "pue_known": bool(options.get("pue_known", options["pue"] != 1.0))}
    assert audit.power_sweep is None and audit.engine_version == ENGINE_VERSION
    assert audit.quality_grade == "D"  # derived again from the measurements' own grades
    assert all(e["recommended"] != "fp16" for e in audit.tradeoff["per_batch_size"])
    m = Measurement.objects.filter(variant__audit=audit).first()
    assert m.co2e_g_per_inference == pytest.approx(m.energy_j_per_inference / 3.6e6 * options["pue"]
                                                   * options["grid_intensity_g_per_kwh"])
    assert all("onclick" not in layer for v in Variant.objects.filter(audit=audit) for layer in v.layer_profile)


def test_a_flood_of_progress_events_makes_a_bounded_number_of_updates_and_a_lost_claim_is_noticed(audit, hostile):
    claim = services.audit_claim(audit_id=audit.pk, hostname="w1")
    hostile(real_result(), behaviour="progress-flood", n_events=20_000, stage_every=5_000)
    request = runner.build_engine_request(claim.audit)
    with CaptureQueriesContext(connection) as queries:
        result = runner.run_engine_for_audit(audit_id=audit.pk, attempt=claim.attempt, request=request)
    assert len(result["variants"]) == 4
    updates = [q for q in queries.captured_queries if q["sql"].startswith('UPDATE "audit_audit"')]
    assert len(updates) <= 40, len(updates)  # a burst of 10, then 2 a second (19,847 before)
    audit.refresh_from_db()  # the last state landed, and the bar never went back
    assert audit.stage == "evaluating · variant 1 of 1"
    assert audit.progress_message == "step 19999" and audit.progress == pytest.approx(99.995)

    services.audit_cancel(audit=audit)  # held-back events must not hide that the audit is gone
    with pytest.raises(runner.AuditLost):
        runner.run_engine_for_audit(audit_id=audit.pk, attempt=claim.attempt, request=request)


def test_the_store_itself_refuses_a_non_finite_number_from_any_caller(audit):
    claim = services.audit_claim(audit_id=audit.pk, hostname="w1")
    doc = real_result()
    doc["variants"][0]["measurements"][0]["latency_ms_mean"] = math.inf
    with pytest.raises(ValueError, match="not finite"):
        services.audit_store_result(audit_id=audit.pk, attempt=claim.attempt, result=doc)
    assert not Measurement.objects.exists()


def test_malformed_progress_events_are_skipped_and_long_messages_cut(audit, hostile):
    claim = services.audit_claim(audit_id=audit.pk, hostname="w1")
    hostile(real_result(), events=[
        {"event": "progress", "stage": "loading", "percent": 10.0, "message": "m" * 1_000_000},
        {"event": "progress", "stage": "measuring", "percent": "abc", "n_variants": "x"},
        {"event": "progress", "stage": "measuring", "percent": math.nan},
        {"event": "progress", "stage": {"nested": 1}, "percent": 50.0},
    ])
    result = runner.run_engine_for_audit(audit_id=audit.pk, attempt=claim.attempt,
                                         request=runner.build_engine_request(claim.audit))
    assert len(result["variants"]) == 4
    audit.refresh_from_db()
    assert (audit.stage, audit.progress, audit.progress_message) == ("loading", 10.0, "m" * 300)


def test_held_back_progress_lands_once_a_write_is_due_with_the_latest_stage_and_highest_percent():
    now = [0.0]
    gate = runner.ProgressGate(rate_per_s=2.0, burst=2, clock=lambda: now[0])
    assert gate.offer({"stage": "loading", "percent": 1.0}) == {"stage": "loading", "percent": 1.0}
    assert gate.offer({"stage": "loading", "percent": 2.0}) is not None
    assert gate.offer({"stage": "measuring", "percent": 40.0, "message": "m"}) is None  # burst spent
    assert gate.offer({"stage": "measuring", "percent": 30.0}) is None
    assert gate.take() is None
    now[0] = 0.5  # one write a half second
    assert gate.take() == {"stage": "measuring", "percent": 40.0, "message": "m"}
    assert gate.take() is None
    assert gate.offer({"stage": "evaluating", "percent": 90.0}) is None
    assert gate.drain() == {"stage": "evaluating", "percent": 90.0}  # the run ended: the last state is written


@pytest.mark.parametrize("kind", ["generation", "forward"])
def test_the_schema_keeps_all_that_the_worker_s_summaries_read_from_a_fresh_engine_run(kind, tmp_path):
    """The worker re-derives the trade-off, frontier and grade from the checked variants: on an
    honest engine's fresh result they come out as the engine's own (a field the schema dropped
    would change them), and every variant stays as it was."""
    from tests.engine import models as m
    from workers.engine import carbon
    from workers.engine.profile import profile_model

    options = dict(m.FAST_OPTIONS, time_cap_s=0.25, pue=1.2, **carbon.lookup("DE"))
    if kind == "generation":
        path, recipes = m.tiny_gpt2(tmp_path / "gpt2"), ["baseline", "int8-dynamic", "prune-unstructured:0.5"]
        options.update(scenario="generation", prompt_tokens=8, new_tokens=8, slo_tpot_ms_p95=1000.0)
    else:
        path = m.save_safetensors(tmp_path / "mlp.safetensors", "mlp", m.MLP_CONFIG)
        recipes = ["baseline", "int8-dynamic", "fp16"]
        options.update(architecture="mlp", architecture_config=m.MLP_CONFIG, latency_target_ms_p95=1000.0)
    doc = profile_model(path, batch_sizes=(1, 2), recipes=recipes, options=options)
    assert all(v["status"] == "succeeded" for v in doc["variants"]), [v["error"] for v in doc["variants"]]

    accepted = runner.accept_result(result_schema.check_result(json.loads(json.dumps(doc))),
                                    {"device": "cpu", "options": options})
    assert [v["status"] for v in accepted["variants"]] == ["succeeded"] * 3, [v.get("error") for v in accepted["variants"]]
    for before, after in zip(doc["variants"], accepted["variants"]):
        kept = [k for k in before if k in after and k != "measurements"]
        assert {k: after[k] for k in kept} == {k: before[k] for k in kept}
        for m0, m1 in zip(before["measurements"], after["measurements"], strict=True):
            assert {k: m1[k] for k in m0 if k in m1} == {k: m0[k] for k in m0 if k in m1}
    for key in ("tradeoff", "frontier", "quality", "carbon"):
        assert json.dumps(accepted[key], sort_keys=True) == json.dumps(doc[key], sort_keys=True), key
