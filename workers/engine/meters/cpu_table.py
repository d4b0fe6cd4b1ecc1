"""Which CPU this is, its power from CodeCarbon's tables, and the load curve measured with RAPL.

Data (workers/engine/data/, see its README.md for source, version and licence):

- ``cpu_power.csv``: CodeCarbon's CPU power table (``Name,TDP``), verbatim from the codecarbon
  3.3.2 wheel (MIT). The TDP of a row always comes from here when the row is in it.
- ``cpu_specs.csv``: cores (and, for AMD, threads) of server parts, from the dataset builder of
  the same repository (AMD's and Intel's product tables as CodeCarbon scraped them), so that a
  package's TDP can be shared out per logical CPU.
- ``cpu_load_profiles.csv``: package power against CPU load on five machines, measured with RAPL
  by CodeCarbon's authors (2025-01-14), 11 load steps each. It gives the idle-to-TDP curve and
  the model's own error.

Identification, first that applies (``identify``):

1. the setting ``cpu_tdp_w`` (the deployment knows its CPU);
2. a row of cpu_power.csv whose name is in the model name (longest such row);
3. the CPUID family/model (``cpuinfo.microarchitecture``) when the model name is generic (a VM
   shows "AMD EPYC"): the rows of that generation in cpu_specs.csv are the candidates;
4. the cloud instance type the deployment names (``cloud_instance_type``), the same way;
5. nothing: every server row of cpu_specs.csv is a candidate.

From several candidates the row at the median W per logical CPU is used, and the table's spread
around it (min and max over the candidates) widens the uncertainty: see ``estimate_bounds``.
"""
from __future__ import annotations

import bisect
import csv
import functools
import math
import os
import re
import statistics
from pathlib import Path

from workers.engine import cpuinfo

DATA = Path(__file__).resolve().parents[1] / "data"
CPU_POWER_CSV = DATA / "cpu_power.csv"
CPU_SPECS_CSV = DATA / "cpu_specs.csv"
CPU_PROFILES_CSV = DATA / "cpu_load_profiles.csv"
SOURCE = "CodeCarbon 3.3.2 cpu_power.csv (MIT)"
SPECS_SOURCE = "CodeCarbon cpu_dataset_builder (MIT, commit b05965e4)"
PROFILES_SOURCE = "CodeCarbon cpu_load_profiling, RAPL vs load, 2025-01-14 (MIT, commit b05965e4)"
# Threads per core where neither the table nor the OS says (SMT-2 on every x86 server part listed)
DEFAULT_THREADS_PER_CORE = 2
CURVE_GRID = tuple(i / 10 for i in range(11))


def normalise(name: str) -> str:
    name = re.sub(r"[™®]|\((r|tm)\)", " ", name.lower())
    name = re.sub(r"@.*$", " ", name)
    name = re.sub(r"\b(processor|cpu|\d+-core)\b", " ", name)
    return re.sub(r"\s+", " ", name).strip()


@functools.lru_cache(maxsize=1)
def power_table() -> dict[str, tuple[str, float]]:
    """normalised name -> (name, TDP W) of every cpu_power.csv row whose TDP is a number (a few
    rows of the upstream file are not, e.g. "27.29.5": they are left out)."""
    rows = {}
    with CPU_POWER_CSV.open(encoding="utf-8", newline="") as fh:
        for r in csv.DictReader(fh):
            try:
                tdp = float(r["TDP"])
            except (TypeError, ValueError):
                continue
            if tdp > 0:
                rows[normalise(r["Name"])] = (r["Name"], tdp)
    return rows


@functools.lru_cache(maxsize=1)
def specs_table() -> dict[str, dict]:
    rows = {}
    with CPU_SPECS_CSV.open(encoding="utf-8", newline="") as fh:
        for r in csv.DictReader(fh):
            r["cores"] = int(r["cores"])
            r["threads"] = int(r["threads"]) if r["threads"] else None
            r["tdp_w"] = float(r["tdp_w"])
            rows[normalise(r["name"])] = r
    return rows


def match_row(model_name: str) -> tuple[str, float] | None:
    """The longest cpu_power.csv row whose name appears, word for word, in the model name."""
    text = normalise(model_name)
    best = None
    for key, row in power_table().items():
        if len(key) > 6 and re.search(rf"(?<!\S){re.escape(key)}(?!\S)", text):
            if best is None or len(key) > len(best[0]):
                best = (key, row)
    return best[1] if best else None


def _threads_of(spec: dict | None, name: str, host: dict) -> tuple[int | None, str]:
    """Logical CPUs of one package of the row: the table's threads, else its cores (or the model
    name's "N-Core") x threads per core: the OS's on bare metal, else 2 (a VM's topology is the
    hypervisor's, not the part's: a guest often sees one thread per core on an SMT-2 part)."""
    tpc = (host.get("threads_per_core") if not host.get("hypervisor") else None) or DEFAULT_THREADS_PER_CORE
    if spec and spec.get("threads"):
        return spec["threads"], "threads from cpu_specs.csv"
    if spec and spec.get("cores"):
        return spec["cores"] * tpc, f"{spec['cores']} cores (cpu_specs.csv) x {tpc} threads per core"
    m = re.search(r"(\d+)-Core", name)
    if m:
        return int(m.group(1)) * tpc, f"{m.group(1)} cores (model name) x {tpc} threads per core"
    if not host.get("hypervisor") and host.get("cores_per_package"):
        cores = host["cores_per_package"]
        return cores * tpc, f"{cores} cores per package as the OS reports them (bare metal) x {tpc}"
    return None, "threads per package unknown"


def _candidate(spec: dict, host: dict) -> dict:
    tdp_row = power_table().get(normalise(spec["name"]))
    tdp = tdp_row[1] if tdp_row else spec["tdp_w"]
    threads, how = _threads_of(spec, spec["name"], host)
    return {"row": tdp_row[0] if tdp_row else spec["name"], "tdp_w": tdp, "threads": threads,
            "threads_source": how, "tdp_source": SOURCE if tdp_row else SPECS_SOURCE,
            "w_per_logical_cpu": tdp / threads}


def candidates_for(arch: dict | None, host: dict) -> list[dict]:
    """The cpu_specs.csv rows a generation can be (all server rows when ``arch`` is None), sorted
    by W per logical CPU; on bare metal only those with the OS's core count, where any has it."""
    rows = []
    for spec in specs_table().values():
        if arch is not None and (not re.fullmatch(arch["series"], spec["series"])
                                 or not re.search(arch["pattern"], spec["name"])):
            continue
        if arch is None and not (spec["series"].startswith("EPYC") or spec["series"] == "Intel Xeon"):
            continue
        rows.append(_candidate(spec, host))
    if not host.get("hypervisor") and host.get("cores_per_package"):
        same = [r for r in rows if r["threads"] == host["cores_per_package"] * (host.get("threads_per_core") or 1)]
        rows = same or rows
    return sorted(rows, key=lambda r: (r["w_per_logical_cpu"], r["row"]))


def identify(options: dict | None = None, host: dict | None = None) -> dict:
    """Which CPU row the estimate uses and why. Keys: how (setting, table-row, cpuid,
    cloud-instance, unknown), why, row, tdp_w, threads, w_per_logical_cpu, candidates,
    k1_table, k2_table (the candidates' spread: median / min, max / median), tdp_source."""
    options = options or {}
    if host is None:
        host = cpuinfo.cpuid()
        model = cpuinfo.cpu_model()
    else:
        model = host.get("model_name") or ""
    given = options.get("cpu_tdp_w") or os.environ.get("AUDIT_CPU_TDP_W")
    if given:
        threads = cpuinfo.logical_cpus_per_package()
        tdp = float(given)
        return {"how": "setting", "why": f"setting cpu_tdp_w={tdp:g} W over the {threads} logical CPUs "
                "the OS shows in one package", "row": None, "tdp_w": tdp, "threads": threads,
                "w_per_logical_cpu": tdp / threads, "candidates": 1, "k1_table": 1.0, "k2_table": 1.0,
                "tdp_source": "setting cpu_tdp_w"}
    row = match_row(model)
    if row is not None:
        name, tdp = row
        threads, how = _threads_of(specs_table().get(normalise(name)), model, host)
        if threads is None:
            threads, how = cpuinfo.logical_cpus_per_package(), "logical CPUs the OS shows in one package"
        return {"how": "table-row", "why": f"model name {model!r} contains the row {name!r}; {how}",
                "row": name, "tdp_w": tdp, "threads": threads, "w_per_logical_cpu": tdp / threads,
                "candidates": 1, "k1_table": 1.0, "k2_table": 1.0, "tdp_source": SOURCE}
    arch, basis = cpuinfo.microarchitecture(host), "cpuid"
    instance = options.get("cloud_instance_type") or os.environ.get("AUDIT_CLOUD_INSTANCE_TYPE") or ""
    if arch is not None:
        flag = arch["flag"]
        seen = "present" if flag in host.get("flags", ()) else "absent (a hypervisor may hide it)"
        why = (f"model name {model!r} matches no row; CPUID {host.get('vendor')} family {host.get('family')} "
               f"model {host.get('model')} stepping {host.get('stepping')} is {arch['name']} "
               f"({arch['series']}, names /{arch['pattern']}/); flag {flag} {seen}")
    else:
        arch = cpuinfo.microarchitecture_of_instance(instance) if instance else None
        basis = "cloud-instance"
        why = (f"model name {model!r} matches no row and CPUID family {host.get('family')} model "
               f"{host.get('model')} no known generation; instance type {instance!r} is {arch['name']}"
               if arch else "")
    if arch is None:
        basis = "unknown"
        why = (f"model name {model!r} matches no row, CPUID family {host.get('family')} model {host.get('model')} "
               "no known generation" + (f", instance type {instance!r} no known family" if instance else "")
               + ": every EPYC and Xeon row of cpu_specs.csv is a candidate")
    rows = candidates_for(arch, host)
    if not rows:  # a generation with no row: fall back to all
        rows, basis = candidates_for(None, host), "unknown"
    mid = rows[(len(rows) - 1) // 2]
    w = mid["w_per_logical_cpu"]
    return {"how": basis, "why": f"{why}; {len(rows)} candidate rows, the one at the median W per logical CPU",
            "row": mid["row"], "tdp_w": mid["tdp_w"], "threads": mid["threads"], "w_per_logical_cpu": w,
            "candidates": len(rows), "k1_table": w / rows[0]["w_per_logical_cpu"],
            "k2_table": rows[-1]["w_per_logical_cpu"] / w, "tdp_source": mid["tdp_source"],
            "microarchitecture": arch["name"] if arch else None}


# ------------------------------------------------------------------ the load curve

@functools.lru_cache(maxsize=1)
def load_profiles() -> dict[str, dict]:
    """profile -> {"cpu", "tdp_w" (all packages), "points": [(load 0-1, W)]}; the TDP from
    cpu_power.csv, the packages from the threads the profile loaded."""
    profiles: dict[str, dict] = {}
    with CPU_PROFILES_CSV.open(encoding="utf-8", newline="") as fh:
        for r in csv.DictReader(fh):
            p = profiles.setdefault(r["profile"], {"cpu": r["cpu"], "threads": int(r["threads"]), "points": []})
            p["points"].append((float(r["load_pct"]) / 100.0, float(r["watts"])))
    for p in profiles.values():
        name, tdp = match_row(p["cpu"])
        per_package, _ = _threads_of(specs_table().get(normalise(name)), p["cpu"], {"threads_per_core": 2})
        p["packages"] = max(1, round(p["threads"] / per_package)) if per_package else 1
        p["tdp_w"] = tdp * p["packages"]
        p["points"].sort()
    return profiles


def _interp(points: list[tuple[float, float]], u: float) -> float:
    xs = [x for x, _ in points]
    i = bisect.bisect_left(xs, u)
    if i <= 0:
        return points[0][1]
    if i >= len(points):
        return points[-1][1]
    (x0, y0), (x1, y1) = points[i - 1], points[i]
    return y0 if x1 == x0 else y0 + (y1 - y0) * (u - x0) / (x1 - x0)


@functools.lru_cache(maxsize=1)
def load_curve() -> tuple[tuple[float, float], ...]:
    """(load, package W / TDP) on a 0, 0.1 ... 1 grid: at each load the median over the
    profiles of their power over their TDP."""
    profiles = load_profiles().values()
    return tuple((u, statistics.median(_interp(p["points"], u) / p["tdp_w"] for p in profiles)) for u in CURVE_GRID)


def curve(u: float) -> float:
    """Package power as a share of TDP at CPU load ``u`` (0-1) of the curve."""
    return _interp(list(load_curve()), min(1.0, max(0.0, u)))


@functools.lru_cache(maxsize=1)
def model_error() -> tuple[float, float]:
    """(k1, k2): the curve's worst underestimate and overestimate against the profiles' own
    measurements: at every load from 0 to 1 in steps of 0.01, each profile's power (linear
    between its measured steps, flat beyond its first and last) over TDP x curve(load) lies in
    [1/k1, k2]. The model's error where the CPU's TDP is known."""
    ratios = []
    for p in load_profiles().values():  # the grid and each profile's own steps (both have kinks)
        for u in sorted({i / 100 for i in range(101)} | {min(1.0, x) for x, _ in p["points"]}):
            ratios.append(_interp(p["points"], u) / (p["tdp_w"] * curve(u)))
    return 1.0 / min(ratios), max(ratios)


def estimate_bounds(ident: dict) -> tuple[float, float]:
    """(k1, k2) of the estimate [x / k1, x * k2]: the model's error (``model_error``) times the
    table's spread over the candidate rows (1 where the row is known): both must be allowed
    for at once, the CPU being any candidate and the curve any profile's."""
    m1, m2 = model_error()
    return m1 * ident.get("k1_table", 1.0), m2 * ident.get("k2_table", 1.0)


def symmetric_rel(k1: float, k2: float) -> float:
    """The one-figure uncertainty the older symmetric field (``energy_uncertainty_rel``, one
    standard uncertainty) carries beside the interval: the u whose log-normal 95% interval
    [x/k, x*k], k = (1 + u) ** 1.96 (the rule budgets and verdicts read it by), has the
    geometric mean width of [x/k1, x*k2], k = sqrt(k1 * k2)."""
    return math.sqrt(k1 * k2) ** (1.0 / 1.96) - 1.0


def finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)
