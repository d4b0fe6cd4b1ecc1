"""Streamed export of measurements: one row per measurement, CSV or JSON, in constant memory.

Rows come from one `values_list(...).iterator(chunk_size=...)` (a server-side cursor on
PostgreSQL): no model instance per row, nothing accumulated. Every figure carries its unit
in its column name. (After netbox's `utilities/export.py` and Django's streaming CSV
how-to.)"""
import csv
import json
import math
from collections.abc import Iterable, Iterator

from django.conf import settings
from django.db.models import CharField, OuterRef, Subquery, Value
from django.db.models.fields.json import KeyTextTransform, KeyTransform
from django.db.models.functions import Coalesce, NullIf
from django.http import StreamingHttpResponse

from ..models import Evaluation, Measurement

A = "variant__audit__"
# (column, ORM path or expression name); the order is the CSV's column order.
COLUMNS: list[tuple[str, str]] = [
    ("audit_id", f"{A}id"),
    ("audit_created_at", f"{A}created_at"),
    ("team", f"{A}model_version__asset__team__slug"),
    ("model", f"{A}model_version__asset__name"),
    ("model_version", f"{A}model_version__label"),
    ("model_version_id", f"{A}model_version_id"),
    ("variant", "variant__recipe"),
    ("batch_size", "batch_size"),
    ("hardware_queue", f"{A}target_queue"),
    ("device", f"{A}device"),
    ("hardware", "export_hardware"),
    ("energy_method", "energy_method"),
    ("energy_estimated", "energy_estimated"),
    ("energy_j_per_inference", "energy_j_per_inference"),
    ("energy_j_per_inference_active", "energy_j_per_inference_active"),
    ("energy_j_per_sample", "energy_j_per_sample"),
    ("energy_uncertainty_ratio", "energy_uncertainty_rel"),
    ("wh_per_1000_inferences", "wh_per_1000_inferences"),
    ("samples_per_joule", "samples_per_joule"),
    ("avg_power_w", "avg_power_w"),
    ("idle_power_w", "idle_power_w"),
    ("co2e_g_per_inference", "co2e_g_per_inference"),
    ("latency_mean_ms", "latency_mean_ms"),
    ("latency_std_ms", "latency_std_ms"),
    ("latency_p50_ms", "latency_p50_ms"),
    ("latency_p95_ms", "latency_p95_ms"),
    ("latency_p99_ms", "latency_p99_ms"),
    ("latency_ci95_ms", "latency_ci95_ms"),
    ("latency_cv_ratio", "cv"),
    ("throughput_samples_per_s", "throughput_samples_per_s"),
    ("peak_memory_bytes", "peak_memory_bytes"),
    ("flops_per_sample", "variant__flops"),
    ("macs_per_sample", "variant__macs"),
    ("params_count", "variant__params"),
    ("model_size_bytes", "variant__size_bytes"),
    ("iterations_count", "iterations"),
    ("windows_count", "windows"),
    ("window_s", "window_s"),
    ("review_status", f"{A}review_status"),
    ("budget_verdict", f"{A}budget_verdict"),
    # schema 2: the evidence behind a verdict (empty for audits stored before it)
    ("audit_quality_grade", f"{A}quality_grade"),
    ("quality_grade", "quality_grade"),
    ("timing_mode", "timing_mode"),
    ("energy_ratio_vs_baseline", "export_energy_ratio"),
    ("energy_ratio_ci95_low", "export_energy_ratio_low"),
    ("energy_ratio_ci95_high", "export_energy_ratio_high"),
    ("latency_ratio_vs_baseline", "export_latency_ratio"),
    ("latency_ratio_ci95_low", "export_latency_ratio_low"),
    ("latency_ratio_ci95_high", "export_latency_ratio_high"),
    ("paired_verdict", "export_paired_verdict"),
    ("latency_ci95_ratio", "latency_ci95_rel"),
    ("grid_intensity_g_per_kwh", "export_grid_intensity"),
    ("grid_region", "export_grid_region"),
    # generation scenario (empty for forward passes)
    ("scenario", "scenario"),
    ("prompt_tokens", "prompt_tokens"),
    ("new_tokens", "new_tokens"),
    ("energy_j_per_output_token", "energy_j_per_output_token"),
    ("energy_j_per_prompt_token", "energy_j_per_prompt_token"),
    ("energy_j_per_request", "energy_j_per_request"),
    ("prefill_energy_share_ratio", "prefill_energy_share"),
    ("ttft_ms_p50", "ttft_ms_p50"),
    ("ttft_ms_p95", "ttft_ms_p95"),
    ("tpot_ms_p50", "tpot_ms_p50"),
    ("tpot_ms_p95", "tpot_ms_p95"),
    ("output_tokens_per_s", "output_tokens_per_s"),
    ("gpu_power_limit_w", "power_limit_w"),
    # the variant's evaluation (empty without one): the labelled metric, and its fidelity to the baseline
    ("accuracy_metric", "export_accuracy_metric"),
    ("accuracy_value", "export_accuracy_value"),
    ("fidelity_metric", "export_fidelity_metric"),
    ("fidelity_value", "export_fidelity_value"),
]


def _comparison(key: str, index: int | None = None):
    expr = KeyTransform(key, "comparison")
    return KeyTransform(str(index), expr) if index is not None else expr


def _evaluation(field: str, *, labelled: bool):
    """One figure of the variant's evaluation (one per variant; the first if there were more):
    the labelled metric (accuracy, or perplexity / MSE where that is the task's metric) or the
    fidelity to the baseline (embedding cosine, top-1 agreement, relative error)."""
    rows = Evaluation.objects.filter(variant=OuterRef("variant"))
    rows = rows.exclude(metric="").filter(value__isnull=False) if labelled else rows.filter(fidelity_value__isnull=False)
    return Subquery(rows.order_by("id").values(field)[:1])


# JSON parts of a row, as expressions the database evaluates (values_list needs names).
ANNOTATIONS = {
    "export_energy_ratio": lambda: _comparison("energy_ratio"),
    "export_energy_ratio_low": lambda: _comparison("energy_ratio_ci95", 0),
    "export_energy_ratio_high": lambda: _comparison("energy_ratio_ci95", 1),
    "export_latency_ratio": lambda: _comparison("latency_ratio"),
    "export_latency_ratio_low": lambda: _comparison("latency_ratio_ci95", 0),
    "export_latency_ratio_high": lambda: _comparison("latency_ratio_ci95", 1),
    "export_paired_verdict": lambda: KeyTextTransform("verdict", "comparison"),
    "export_grid_intensity": lambda: KeyTransform("intensity_g_per_kwh", f"{A}carbon"),
    "export_grid_region": lambda: KeyTextTransform("region", f"{A}carbon"),
    "export_accuracy_metric": lambda: _evaluation("metric", labelled=True),
    "export_accuracy_value": lambda: _evaluation("value", labelled=True),
    "export_fidelity_metric": lambda: _evaluation("fidelity_metric", labelled=False),
    "export_fidelity_value": lambda: _evaluation("fidelity_value", labelled=False),
}
HEADER = [name for name, _ in COLUMNS]
ROWS_PER_WRITE = 500


def measurement_rows_queryset(audits):
    """A values_list queryset: tuples in COLUMNS order for every measurement of the given
    (already scoped and filtered) audits, in a stable order: the audits' order, then variant,
    then batch size."""
    hardware = Coalesce(
        NullIf(KeyTextTransform("name", KeyTransform("gpu", f"{A}fingerprint")), Value("")),
        NullIf(KeyTextTransform("cpu_model", f"{A}fingerprint"), Value("")),
        NullIf(KeyTextTransform("model", KeyTransform("cpu", f"{A}fingerprint")), Value("")),
        Value(""),
        output_field=CharField(),
    )
    ordering = [f"-{A}{field[1:]}" if field.startswith("-") else f"{A}{field}" for field in audits.query.order_by]
    ordering = ordering or [f"-{A}created_at", f"-{A}id"]
    rows = (
        Measurement.objects.filter(variant__audit__in=audits.order_by().values("pk"))
        .annotate(export_hardware=hardware, **{name: make() for name, make in ANNOTATIONS.items()})
        .order_by(*ordering, "variant__position", "batch_size", "id")
        .values_list(*[path for _, path in COLUMNS])
    )
    return rows


def measurement_rows(audits) -> Iterator[tuple]:
    return measurement_rows_queryset(audits).iterator(chunk_size=settings.API_EXPORT_CHUNK_SIZE)


class _Lines(list):
    """A file-like list: csv.writer appends each formatted line to it."""

    write = list.append


DATETIME_COLUMNS = [i for i, (name, _) in enumerate(COLUMNS) if name.endswith("_at")]


def _with_iso_dates(row: tuple) -> tuple | list:
    if not DATETIME_COLUMNS:
        return row
    row = list(row)
    for i in DATETIME_COLUMNS:
        if row[i] is not None:
            row[i] = row[i].isoformat()
    return row


# A text cell a spreadsheet would take for a formula (OWASP, "CSV Injection"): names, labels and
# error messages come from users. Such a cell is written with a single quote in front.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralise_cell(value):
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def csv_chunks(rows: Iterable[tuple]) -> Iterator[str]:
    """CSV text in pieces of ROWS_PER_WRITE rows (None is written as an empty cell; text that
    would start a formula is neutralised)."""
    lines = _Lines()
    writer = csv.writer(lines)
    writer.writerow(HEADER)
    batch: list = []
    for row in rows:
        batch.append([neutralise_cell(value) for value in _with_iso_dates(row)])
        if len(batch) >= ROWS_PER_WRITE:
            writer.writerows(batch)
            yield "".join(lines)
            lines.clear()
            batch = []
    writer.writerows(batch)
    if lines:
        yield "".join(lines)


def json_chunks(rows: Iterable[tuple]) -> Iterator[str]:
    """A JSON array of objects, written piece by piece. A non-finite figure becomes null."""
    encode = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode
    yield "["
    buffer: list[str] = []
    first = True
    for row in rows:
        row = _with_iso_dates(row)
        try:
            text = encode(dict(zip(HEADER, row)))
        except ValueError:  # NaN or infinity
            text = encode({k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in zip(HEADER, row)})
        buffer.append(text if first else "," + text)
        first = False
        if len(buffer) >= ROWS_PER_WRITE:
            yield "\n".join(buffer)
            buffer = []
    if buffer:
        yield "\n".join(buffer)
    yield "]\n"


def export_response(audits, fmt: str) -> StreamingHttpResponse:
    rows = measurement_rows(audits)
    if fmt == "csv":
        response = StreamingHttpResponse(csv_chunks(rows), content_type="text/csv; charset=utf-8")
    else:
        response = StreamingHttpResponse(json_chunks(rows), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="energy-audit-measurements.{fmt}"'
    response["Cache-Control"] = "no-store"
    return response
