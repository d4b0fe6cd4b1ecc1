"""Grid carbon intensity from the table shipped with the project
(workers/engine/data/grid_intensity.csv; see data/README.md for its source,
licence and how its figures were obtained).

A pure lookup: standard library only, no torch, no network, so the web process
imports it to fill an audit's carbon options. The live provider (Electricity
Maps) is asked by the web side, never by the engine.
"""
from __future__ import annotations

import csv
import functools
from pathlib import Path

TABLE_PATH = Path(__file__).with_name("data") / "grid_intensity.csv"


class UnknownRegion(KeyError):
    """The region code is not in the shipped table."""


@functools.lru_cache(maxsize=1)
def table() -> dict[str, dict]:
    """Region code (upper case) -> its row, with g_per_kwh a float and year an int."""
    rows = {}
    with TABLE_PATH.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            row["g_per_kwh"] = float(row["g_per_kwh"])
            row["year"] = int(row["year"])
            rows[row["region"].upper()] = row
    return rows


def normalise(region: str) -> str:
    return (region or "").strip().upper()


def regions() -> list[tuple[str, str]]:
    """(code, "Name (code): N g/kWh, year") for choices, WORLD and EU first, then by name."""
    rows = table()
    first = [code for code in ("WORLD", "EU") if code in rows]
    rest = sorted((c for c in rows if c not in first), key=lambda c: rows[c]["name"])
    return [(c, f"{rows[c]['name']} ({c}): {rows[c]['g_per_kwh']:g} gCO2e/kWh, {rows[c]['year']}")
            for c in first + rest]


def lookup(region: str) -> dict:
    """The engine request options for ``region`` from the table.

    Keys: grid_intensity_g_per_kwh, carbon_source, carbon_region, carbon_year,
    carbon_kind, carbon_licence, carbon_source_url (profile.py copies the carbon_*
    keys into the result's ``carbon`` section without the prefix).
    """
    code = normalise(region)
    row = table().get(code)
    if row is None:
        raise UnknownRegion(code)
    return {
        "grid_intensity_g_per_kwh": row["g_per_kwh"],
        "carbon_source": f"{row['source']}, {row['name']} {row['year']}",
        "carbon_region": code,
        "carbon_year": row["year"],
        "carbon_kind": row["kind"],
        "carbon_licence": row["licence"],
        "carbon_source_url": row["source_url"],
    }


def co2e_g(energy_j: float, intensity_g_per_kwh: float, pue: float = 1.0) -> float:
    """gCO2e = kWh x PUE x grid intensity."""
    return energy_j / 3.6e6 * pue * intensity_g_per_kwh


def world_g_per_kwh() -> float:
    """The table's world average: the intensity used where nobody named a region."""
    return float(table()["WORLD"]["g_per_kwh"])


def boundary_co2e(measurement: dict, intensity_g_per_kwh: float, pue: float, pue_known: bool) -> tuple[float, str]:
    """Grams of CO2e per inference and the boundary they rest on, for a measurement that names
    its boundaries (``energy_boundaries``, workers/engine/meters/boundary.py): the facility figure
    (host x ``pue``, set again here from the worker's own PUE) when a PUE is known, the host figure
    when none is (the facility would only be host x 1.0). A measurement without boundaries (older
    results) keeps the device figure x PUE, labelled "device"."""
    bounds = measurement.get("energy_boundaries") or {}
    host = (bounds.get("host") or {}).get("j_per_inference")
    if not isinstance(host, (int, float)):
        return co2e_g(float(measurement["energy_j_per_inference"]), intensity_g_per_kwh, pue), "device"
    facility = dict(bounds.get("facility") or {})
    facility.update({"j_per_inference": host * pue, "pue": pue, "pue_known": bool(pue_known),
                     "method": f"host x PUE {pue:g}"})
    bounds["facility"] = facility
    measurement["energy_boundaries"] = bounds
    if pue_known:
        return co2e_g(host * pue, intensity_g_per_kwh), "facility"
    return co2e_g(host, intensity_g_per_kwh), "host"
