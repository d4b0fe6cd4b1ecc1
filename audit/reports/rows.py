"""The variant rows every report page reads: the variants of some audits with their
measurements and evaluations (three queries whatever their number), one row per variant at a
reference batch size, and the per-audit summary the compare and history pages build on."""
from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Prefetch

from ..models import Audit, Evaluation, Measurement, Variant
from . import formatting as units
from .quantities import QUANTITIES, Quantity
from .ratings import hardware_class
from .tradeoff import Point, finite, pick_accuracy


def variants_with_results(audit_ids: list[int], *, light: bool = False) -> dict[int, list[Variant]]:
    """Variants of the audits with measurements (by batch size) and evaluations: three
    queries whatever the number of audits, variants and batch sizes. `light` leaves out the
    large JSON (per-layer profiles, power traces) that only the single report draws."""
    variants = Variant.objects.filter(audit_id__in=audit_ids)
    measurements = Measurement.objects.order_by("batch_size")
    if light:
        variants, measurements = variants.defer("layer_profile"), measurements.defer("power_trace")
    variants = (
        variants
        .order_by("audit_id", "position", "id")
        .prefetch_related(
            Prefetch("measurements", queryset=measurements),
            Prefetch("evaluations", queryset=Evaluation.objects.order_by("id")),
        )
    )
    grouped: dict[int, list[Variant]] = {pk: [] for pk in audit_ids}
    for v in variants:
        grouped.setdefault(v.audit_id, []).append(v)
    return grouped


@dataclass
class VariantRow:
    variant: Variant
    measurements: list[Measurement]
    ref: Measurement | None
    accuracy_pct: float | None
    is_baseline: bool
    is_recommended: bool = False
    on_frontier: bool = False
    energy_change: float | None = None
    accuracy_change_pts: float | None = None
    # schema 2: fidelity to the baseline (its metric name) and the paired comparison at the
    # reference batch size (None for the baseline and for v1 results)
    fidelity: float | None = None
    fidelity_metric: str = ""
    comparison: dict | None = None
    # what the paired ratios divide, and the ratio of the figures shown where it differs
    # (ratios.ratio_note; set by the report page for variants with a comparison)
    energy_note: dict | None = None
    latency_note: dict | None = None

    @property
    def key(self) -> str:
        return self.variant.recipe

    @property
    def point(self) -> Point:
        ref = self.ref
        return Point(
            key=self.key,
            energy_j=ref.energy_j_per_inference if ref else None,
            accuracy_pct=self.accuracy_pct,
            latency_ms=ref.latency_p50_ms if ref else None,
            is_baseline=self.is_baseline,
        )

    @property
    def grade(self) -> str:
        """The paired comparison's grade for a variant, the measurement's own for the baseline."""
        if self.comparison and self.comparison.get("quality_grade"):
            return self.comparison["quality_grade"]
        return (self.ref.quality_grade if self.ref else "") or ""

    @property
    def grade_reasons(self) -> list[str]:
        if self.comparison and self.comparison.get("quality_grade"):
            return list(self.comparison.get("quality_reasons") or [])
        return list(self.ref.quality_reasons or []) if self.ref else []

    @property
    def energy_ratio_text(self) -> str:
        c = self.comparison or {}
        return units.ratio(c.get("energy_ratio"), c.get("energy_ratio_ci95"))

    @property
    def latency_ratio_text(self) -> str:
        c = self.comparison or {}
        return units.ratio(c.get("latency_ratio"), c.get("latency_ratio_ci95"))


def _pick_ref(measurements: list[Measurement], batch: int | None) -> Measurement | None:
    for m in measurements:
        if m.batch_size == batch:
            return m
    return None


def reference_batch(variants: list[Variant], requested: int | None = None) -> int | None:
    """The batch size the summary speaks of: the one asked for if measured, else the
    smallest the baseline (or, failing it, any variant) was measured at."""
    sizes = sorted({m.batch_size for v in variants for m in v.measurements.all()})
    if not sizes:
        return None
    if requested in sizes:
        return requested
    baseline = next((v for v in variants if v.recipe == "baseline"), None)
    base_sizes = sorted(m.batch_size for m in baseline.measurements.all()) if baseline else []
    return base_sizes[0] if base_sizes else sizes[0]


def _fidelity(evaluations) -> tuple[float | None, str]:
    for ev in evaluations:
        if finite(ev.fidelity_value):
            return float(ev.fidelity_value), ev.fidelity_metric or "fidelity"
    return None, ""


def variant_rows(variants: list[Variant], batch: int | None) -> list[VariantRow]:
    rows = []
    for v in variants:
        ms = list(v.measurements.all())
        evaluations = list(v.evaluations.all())
        fidelity, fidelity_metric = _fidelity(evaluations)
        comparison = next((c for c in (v.comparison or []) if c.get("batch_size") == batch), None)
        rows.append(VariantRow(
            variant=v, measurements=ms, ref=_pick_ref(ms, batch),
            accuracy_pct=pick_accuracy(evaluations), is_baseline=v.recipe == "baseline",
            fidelity=fidelity, fidelity_metric=fidelity_metric, comparison=comparison,
        ))
    return rows


def is_generation(audit: Audit, rows: list[VariantRow] | None = None) -> bool:
    if (audit.scenario or {}).get("kind") == "generation":
        return True
    return any(m.scenario == "generation" for r in rows or [] for m in r.measurements)


def latency_quantity(rows: list[VariantRow]) -> Quantity:
    """p50 where every measurement has it; throughput timing has only the mean per call, and
    a chart must not draw a mean under a p50 title."""
    measured = [m for r in rows for m in r.measurements]
    if measured and all(m.latency_p50_ms is not None for m in measured):
        return QUANTITIES["latency"]
    return QUANTITIES["latency_mean"]


def _better_from_interval(ci, lower_is_better: bool) -> bool | None:
    """Better only when the whole 95% interval says so; None when it holds 1."""
    if not (isinstance(ci, (list, tuple)) and len(ci) == 2 and all(finite(c) for c in ci)):
        return None
    lo, hi = ci
    if hi < 1.0:
        return lower_is_better
    if lo > 1.0:
        return not lower_is_better
    return None


def _estimated(rows: list[VariantRow]) -> bool:
    return any(m.energy_estimated for r in rows for m in r.measurements)


def _audit_summaries(audits: list[Audit], *, fall_back_to_any_variant: bool = False) -> list[dict]:
    """Per audit: its variant rows at its reference batch size, its baseline row (or, when asked,
    its first measured variant if the baseline was not measured), hardware class and whether
    its energy is estimated. Three queries whatever the number of audits."""
    grouped = variants_with_results([a.pk for a in audits], light=True)
    summaries = []
    for audit in audits:
        variants = grouped.get(audit.pk, [])
        ref_batch = reference_batch(variants)
        rows = variant_rows(variants, ref_batch)
        base = next((r for r in rows if r.is_baseline and r.ref), None)
        if base is None and fall_back_to_any_variant:
            base = next((r for r in rows if r.ref), None)
        summaries.append({"audit": audit, "rows": rows, "base": base, "ref_batch": ref_batch,
                          "hardware": hardware_class(audit.fingerprint, audit.device), "estimated": _estimated(rows),
                          "generation": is_generation(audit, rows)})
    return summaries


