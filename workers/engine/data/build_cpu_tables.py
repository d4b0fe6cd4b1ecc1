"""Rebuild the CPU tables of this folder from CodeCarbon (MIT): see README.md, "CPU power".

    python workers/engine/data/build_cpu_tables.py WHEEL_DIR REPO_DIR

WHEEL_DIR: the unpacked ``codecarbon`` wheel (``pip download codecarbon --no-deps`` then unzip);
REPO_DIR: a checkout of github.com/mlco2/codecarbon. Writes cpu_power.csv (the wheel's table,
verbatim), cpu_specs.csv (cores and threads of server parts, from the repo's dataset builder) and
cpu_load_profiles.csv (package power against load, measured with RAPL by CodeCarbon's authors).
Standard library only; nothing here is imported by the engine.
"""
from __future__ import annotations

import csv
import re
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).parent
PROFILES = "codecarbon/data/hardware/cpu_load_profiling"
BUILDER = "codecarbon/data/hardware/cpu_dataset_builder"


def clean_name(name: str) -> str:
    name = re.sub(r"[™®]|\(R\)|\(TM\)", "", name)
    name = re.sub(r"\s+Processor\s*$", "", name.strip())
    return re.sub(r"\s+", " ", name).strip()


def specs(repo: Path) -> list[dict]:
    rows = []
    with (repo / BUILDER / "amd_cpu_server_dataset.csv").open(encoding="utf-8-sig") as fh:
        for r in csv.DictReader(fh):
            tdp = re.match(r"\s*(\d+(?:\.\d+)?)\s*W", r["Default TDP"] or "")
            if not tdp or not r["# of CPU Cores"].isdigit():
                continue
            rows.append({"name": clean_name(r["Name"]), "series": r["Series"], "cores": int(r["# of CPU Cores"]),
                         "threads": int(r["# of Threads"]) if r["# of Threads"].isdigit() else "",
                         "tdp_w": float(tdp.group(1)), "source": "amd_cpu_server_dataset.csv"})
    with (repo / BUILDER / "intel_cpu_ark_dataset.csv").open(encoding="utf-8-sig") as fh:
        for r in csv.DictReader(fh):
            if "Xeon" not in r["cpu_name"] or not r["total_cores"].isdigit() or not r["tdp"]:
                continue
            rows.append({"name": clean_name(r["cpu_name"]), "series": "Intel Xeon", "cores": int(r["total_cores"]),
                         "threads": "", "tdp_w": float(r["tdp"]), "source": "intel_cpu_ark_dataset.csv"})
    return rows


def profiles(repo: Path) -> list[dict]:
    rows = []
    for path in sorted((repo / PROFILES).glob("*/*all_cores*.csv")):
        if path.name.endswith("-tasks.csv"):
            continue
        with path.open(encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                # the mean power of each 30 s step: its RAPL energy (kWh) over its duration; the file's
                # rapl_power column is one instantaneous read, a step late
                watts = float(r["rapl_energy"]) * 3.6e6 / float(r["duration"])
                rows.append({"profile": path.parent.name, "cpu": r["cpu_name"], "threads": int(r["cores_used"]),
                             "load_pct": round(float(r["cpu_load"]), 2), "watts": round(watts, 3)})
    return rows


def write(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def main(wheel: Path, repo: Path) -> None:
    shutil.copyfile(wheel / "codecarbon/data/hardware/cpu_power.csv", HERE / "cpu_power.csv")
    write(HERE / "cpu_specs.csv", specs(repo))
    write(HERE / "cpu_load_profiles.csv", profiles(repo))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
