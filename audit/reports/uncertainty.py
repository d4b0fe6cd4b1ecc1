"""An audit's energy uncertainty: one figure, one definition, for every page that shows it
(issue 22: the report said ±126% and the compare page ±83% for the same audit, the largest
over every measurement on one and the baseline's at one batch size on the other).

The definition: the largest relative standard uncertainty (one sigma) of the audit's energy
figures, every variant at every batch size. Each figure's is the engine's
``energy_uncertainty_rel`` (workers/engine/timing.py): the meter method's own uncertainty
(calibration, attribution to this process) and the statistical one (the spread of the
per-window energies over the square root of their number) combined in quadrature. The largest
is the one a reader must allow for whichever figure of the audit they read.
"""
from __future__ import annotations

from .tradeoff import finite

DEFINITION = ("largest relative standard uncertainty (1σ) of the audit's energy figures, every variant at every "
              "batch size: the meter method's own and the spread of the windows' energies, combined")


def energy_uncertainty(measurements) -> dict | None:
    """{"rel", "n", "batch_size", "recipe", "method_rel", "stat_rel", "title"} for the largest
    relative energy uncertainty among ``measurements``; None when none has one."""
    known = [m for m in measurements if finite(getattr(m, "energy_uncertainty_rel", None))]
    if not known:
        return None
    worst = max(known, key=lambda m: m.energy_uncertainty_rel)
    variant = getattr(worst, "variant", None)
    recipe = getattr(variant, "recipe", "") if variant is not None else ""
    where = f"{recipe} at batch {worst.batch_size}" if recipe else f"batch {worst.batch_size}"
    parts = []
    if finite(worst.energy_uncertainty_method_rel):
        parts.append(f"method ±{worst.energy_uncertainty_method_rel:.0%}")
    if finite(worst.energy_uncertainty_stat_rel):
        parts.append(f"windows ±{worst.energy_uncertainty_stat_rel:.0%}")
    title = (f"Energy uncertainty: the {DEFINITION}. The largest of {len(known)} figure"
             f"{'s' if len(known) != 1 else ''} is {where}" + (f" ({', '.join(parts)})" if parts else "") + ".")
    return {"rel": float(worst.energy_uncertainty_rel), "n": len(known), "batch_size": worst.batch_size,
            "recipe": recipe, "method_rel": worst.energy_uncertainty_method_rel,
            "stat_rel": worst.energy_uncertainty_stat_rel, "title": title}


def audit_energy_uncertainty(rows) -> dict | None:
    """The same over an audit's variant rows (rows.VariantRow)."""
    return energy_uncertainty([m for r in rows for m in r.measurements])
