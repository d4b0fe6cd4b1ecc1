"""The CPU estimate against the RAPL counter, on a host that has one (issue 23).

For a few workloads (idle, one busy thread, a matmul on all threads, a memory-bound copy) the
RAPL package counter (workers/engine/meters/rapl.py) and the estimate (cpu_estimate.py: the CPU
identified in CodeCarbon's tables, the load curve) read the same window; the bench prints
estimate / counter for each, and whether the counter lies inside the estimate's stated interval
[x/k1, x*k2]. Record the table in docs/BENCHMARKS.md ("CPU estimate against RAPL").

Run (root, or energy_uj readable: see workers/engine/meters/powercap.py):
    .venv/bin/python bench/cpu_estimate.py [--seconds 5] [--threads N]
AUDIT_POWERCAP_ROOT points elsewhere; AUDIT_CPU_TDP_W / AUDIT_CLOUD_INSTANCE_TYPE are honoured as
in an audit. Where no RAPL package zone is readable it says so, prints what the estimate would
use on this machine, and exits with status 2: there is nothing to compare against.

Note: the counter reads the whole package (every process of the machine); the estimate counts
this process only. Run it on a quiet host, and read "other CPUs busy" in the output.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workers.engine import cpuinfo  # noqa: E402
from workers.engine.meters import (  # noqa: E402
    RaplMeter,
    TdpEstimateMeter,
    powercap_root,
    rapl_dram_domains,
    rapl_package_domains,
)


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        x += 1


def _matmul(seconds: float, threads: int) -> None:
    import torch  # noqa: PLC0415

    torch.set_num_threads(threads)
    a = torch.randn(1024, 1024)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        a = (a @ a).clamp_(-1, 1)


def _copy(seconds: float, threads: int) -> None:
    import torch  # noqa: PLC0415

    torch.set_num_threads(threads)
    src = torch.ones(64 * 1024 * 1024 // 4)  # 64 MB: past the caches
    dst = torch.empty_like(src)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        dst.copy_(src)


def workloads(threads: int):
    return [
        ("idle (sleep)", lambda s: time.sleep(s)),
        ("one busy thread", _busy),
        (f"matmul, {threads} threads", lambda s: _matmul(s, threads)),
        (f"memory copy, {threads} threads", lambda s: _copy(s, threads)),
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    estimate = TdpEstimateMeter({"threads": args.threads})
    ident = estimate.identification
    print(f"CPU: {cpuinfo.cpu_model()!r}; {estimate.logical_cpus} logical CPUs")
    print(f"estimate uses: {ident['row'] or 'a TDP setting'} ({ident['how']}): {ident['why']}")
    print(f"  {estimate.tdp_per_cpu:.3g} W TDP per logical CPU; interval x/{estimate.k1:.2f} to x{estimate.k2:.2f}")
    root = powercap_root({})
    domains, present = rapl_package_domains(root)
    if not domains:
        why = "present but unreadable (root, or make energy_uj readable)" if present else "absent"
        print(f"No RAPL here: powercap package zones under {root} are {why}. Nothing to compare the estimate "
              "against on this host; run this on a host with RAPL.")
        return 2
    counter = RaplMeter(domains, {"rapl_poll_s": 0.1}, dram_domains=rapl_dram_domains(root))
    print(f"RAPL: {', '.join(d.name for d in domains)}" + (" + dram" if counter.dram_domains else ""))
    print(f"{'workload':<28} {'counter W':>10} {'estimate W':>11} {'est/counter':>12} {'inside':>7} "
          f"{'load':>6} {'others':>7}")
    inside_all = True
    for name, run in workloads(args.threads):
        counter.begin()
        estimate.begin()
        run(args.seconds)
        e = estimate.end()
        c = counter.end()
        ratio = e.energy_j / c.energy_j if c.energy_j > 0 else float("nan")
        inside = e.energy_j / estimate.k1 <= c.energy_j <= e.energy_j * estimate.k2
        inside_all &= inside
        a = e.assumptions
        others = a["other_processes_cpus"]
        print(f"{name:<28} {c.avg_power_w:>10.1f} {e.avg_power_w:>11.1f} {ratio:>12.2f} {'yes' if inside else 'NO':>7} "
              f"{a['load']:>6.2f} {others if others is not None else float('nan'):>7.2f}")
    print("every counter reading inside the estimate's interval" if inside_all else
          "some counter readings fall outside the estimate's interval: record them in docs/BENCHMARKS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
