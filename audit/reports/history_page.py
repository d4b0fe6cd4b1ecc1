"""The model history page's reads: any figure across the versions of a model, from the
latest succeeded audit of each version."""
from __future__ import annotations

from django.db.models import Exists, OuterRef

from ..models import Audit, ModelAsset
from . import figures
from .quantities import AXIS_CHOICES, QUANTITIES, Quantity
from .release import release_history
from .rows import _audit_summaries


def model_history_context(asset: ModelAsset, *, figure: str | None = None) -> dict:
    """Any figure across the versions of a model: the latest succeeded audit of each version,
    one series per hardware class and batch size. Four queries."""
    chosen = QUANTITIES.get(figure or "", QUANTITIES["energy"])
    later = Audit.objects.filter(
        model_version=OuterRef("model_version"), status=Audit.Status.SUCCEEDED, finished_at__gt=OuterRef("finished_at")
    )
    audits = list(
        Audit.objects.filter(model_version__asset=asset, status=Audit.Status.SUCCEEDED)
        .filter(~Exists(later))
        .select_related("model_version")
        .order_by("model_version__created_at", "model_version_id", "-id")
    )
    entries = [{**summary, "version": summary["audit"].model_version} for summary in _audit_summaries(audits)]
    series: dict[str, dict] = {}
    for e in entries:
        if not e["base"]:
            continue
        # One line per hardware class, batch size and kind of energy figure: a version audited
        # at batch 8 is not drawn as a regression of one audited at batch 1, and estimated
        # energy never shares a line with measured.
        name = f"{e['hardware']} · batch {e['ref_batch']}" + (" (estimated)" if e["estimated"] else "")
        s = series.setdefault(name, {"x": [], "rows": []})
        s["x"].append(e["version"].label)
        s["rows"].append(e["base"])
    estimated = any(e["estimated"] for e in entries)

    def over_versions(q: Quantity, key: str, **kw) -> dict:
        return figures.versions_figure(
            [{"name": name, "x": s["x"], "y": [q.value(r, r.ref) for r in s["rows"]]} for name, s in series.items()],
            y=q, estimated=estimated and q.unit == "J", **kw)

    figs = {
        "chart-history-chosen": over_versions(chosen, "chosen", title=f"{chosen.label} across versions"),
        "chart-history-energy": over_versions(QUANTITIES["energy"], "energy", title="Energy per inference across versions"),
        "chart-history-latency": over_versions(QUANTITIES["latency"], "latency", title="Latency p50 across versions"),
        "chart-history-accuracy": over_versions(
            QUANTITIES["accuracy"], "accuracy", title="Accuracy across versions",
            empty_message="Accuracy unknown: no version was evaluated on a dataset."),
    }
    return {"entries": entries, "figures": figs, "estimated": estimated, "chosen": chosen,
            "axis_choices": [QUANTITIES[k] for k in AXIS_CHOICES], **release_history(entries)}
