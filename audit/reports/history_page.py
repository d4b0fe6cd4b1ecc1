"""The model history page's reads: any figure across the versions of a model, from the
latest succeeded audit of each version."""
from __future__ import annotations

from django.db.models import Exists, OuterRef

from ..models import Audit, ModelAsset
from . import figures
from .quantities import AXIS_CHOICES, QUANTITIES, Quantity
from .release import release_history
from .rows import _audit_summaries
from .tradeoff import finite


def history_panels(generation: bool, accuracy_known: bool) -> list[tuple[str, Quantity, str]]:
    """The fixed charts of the history, (element id, quantity, title): energy, latency and the
    quality figure for a forward model; for a language model, energy per output token, TPOT and
    TTFT, and accuracy only when a version was evaluated on a labelled dataset (an empty accuracy
    panel says nothing a language model's reader needs)."""
    if generation:
        panels = [("chart-history-energy", QUANTITIES["j_per_token"], "Energy per output token across versions"),
                  ("chart-history-latency", QUANTITIES["tpot"], "Time per output token p95 across versions"),
                  ("chart-history-ttft", QUANTITIES["ttft"], "Time to first token p95 across versions")]
        if accuracy_known:
            panels.append(("chart-history-accuracy", QUANTITIES["accuracy"], "Accuracy across versions"))
        return panels
    return [("chart-history-energy", QUANTITIES["energy"], "Energy per inference across versions"),
            ("chart-history-latency", QUANTITIES["latency"], "Latency p50 across versions"),
            ("chart-history-accuracy", QUANTITIES["accuracy"], "Accuracy across versions")]


def model_history_context(asset: ModelAsset, *, figure: str | None = None) -> dict:
    """Any figure across the versions of a model: the latest succeeded audit of each version,
    one series per hardware class and batch size. Four queries. The chosen figure gets a chart of
    its own only when it is not one of the fixed charts (drawn once, never twice)."""
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
    measured = [e for e in entries if e["base"]]
    # a language model's history speaks of tokens: every measured version was a generation audit
    generation = bool(measured) and all(e["generation"] for e in measured)
    accuracy_known = any(finite(e["base"].accuracy_pct) for e in measured)

    def over_versions(q: Quantity, **kw) -> dict:
        return figures.versions_figure(
            [{"name": name, "x": s["x"], "y": [q.value(r, r.ref) for r in s["rows"]]} for name, s in series.items()],
            y=q, estimated=estimated and q.unit == "J", **kw)

    panels = history_panels(generation, accuracy_known)
    chosen = QUANTITIES.get(figure or "", panels[0][1])
    figs = {}
    if chosen.key not in {q.key for _, q, _ in panels}:
        figs["chart-history-chosen"] = over_versions(chosen, title=f"{chosen.label} across versions")
    for element, q, title in panels:
        kw = {"empty_message": "Accuracy unknown: no version was evaluated on a dataset."} if q.key == "accuracy" else {}
        figs[element] = over_versions(q, title=title, **kw)
    return {"entries": entries, "figures": figs, "estimated": estimated, "chosen": chosen, "generation": generation,
            "accuracy_known": accuracy_known, "panels": [element for element, _, _ in panels],
            "axis_choices": [QUANTITIES[k] for k in AXIS_CHOICES], **release_history(entries)}
