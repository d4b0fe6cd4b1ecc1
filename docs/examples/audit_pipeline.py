#!/usr/bin/env python3
"""Fail a build when a model breaks its team's energy budget, or costs more than the approved version.

An ML pipeline step: upload the trained model to Energy Audit, request an audit against the
model's approved version (measured in the same interleaved rounds: "did this release cost
more?"), wait for it, print the comparison and the budget verdict per limit, and exit non-zero
when a budget fails or the new version costs more (with --strict, also when something could not
be decided). Standard library only (Python 3.9+), so it runs in any CI image.

    export ENERGY_AUDIT_URL=https://energy-audit.example.org
    export ENERGY_AUDIT_TOKEN=...            # Account page -> "Create token"
    python audit_pipeline.py model.safetensors --name digits-mlp --label "$GIT_SHA" \
        --batch-sizes 1,8 --target cpu                 # against the approved version, if any
    ... --reference 42                                 # against model version #42 instead
    ... --reference none                               # no comparison, budgets only

Exit status: 0 every budget passed (or none applies) and the version does not cost more than
its reference (or has none), 1 a budget failed, 2 the audit failed or was cancelled, 3 it did
not finish in time, 4 an API error (bad token, refused upload, unknown reference...),
5 with --strict: nothing failed but something was inconclusive (a budget limit inside the
figure's 95% interval, a measurement that cannot carry a verdict, a comparison whose ratio
interval straddles the margin, or a reference that could not be compared),
6 the new version costs more energy than its reference: the paired ratio's 95% interval lies
wholly above the audit's saving margin at some batch size (a budget failure, 1, is reported
first). Without --strict an inconclusive verdict exits 0 and says so: on a noisy runner, use
--strict or a quieter one.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

EXIT_PASS, EXIT_BUDGET_FAILED, EXIT_AUDIT_FAILED, EXIT_TIMEOUT, EXIT_API_ERROR, EXIT_INCONCLUSIVE = 0, 1, 2, 3, 4, 5
EXIT_COSTS_MORE = 6
# the server's reference_verdict values that --strict also fails on
UNDECIDED = ("inconclusive", "not compared")


class ApiError(Exception):
    def __init__(self, status: int, body):
        super().__init__(f"HTTP {status}: {body}")
        self.status, self.body = status, body


class Client:
    """A tiny client for /api/v1/ with token authentication."""

    def __init__(self, base_url: str, token: str):
        self.base_url = base_url.rstrip("/")
        self.token = token

    def send(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None) -> tuple[int, bytes]:
        """One HTTP request; returns (status, body). Replaced in tests."""
        headers = {"Authorization": f"Token {self.token}", "Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(self.base_url + path, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=300) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def call(self, method: str, path: str, *, json_body=None, files=None, fields=None) -> dict:
        if files is not None:
            body, content_type = multipart(fields or {}, files)
        elif json_body is not None:
            body, content_type = json.dumps(json_body).encode(), "application/json"
        else:
            body, content_type = None, None
        status, raw = self.send(method, path, body, content_type)
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = raw.decode(errors="replace")
        if status >= 400:
            raise ApiError(status, data)
        return data


def multipart(fields: dict, files: dict) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, path in files.items():
        path = Path(path)
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{path.name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode() + path.read_bytes() + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def run(client: Client, args, *, sleep=time.sleep, out=sys.stdout) -> int:
    def say(text: str) -> None:
        print(text, file=out, flush=True)

    fields = {"name": args.name, "label": args.label or "", "task": args.task}
    if args.team:
        fields["team"] = args.team
    try:
        version = client.call("POST", "/api/v1/models/", files={"file": args.model}, fields=fields)
        say(f"model version #{version['id']}: {version['model_name']} {version['label']} ({version['format']})")
        request = {"model_version": version["id"], "target_queue": args.target,
                   "batch_sizes": [int(b) for b in args.batch_sizes.split(",") if b.strip()]}
        if args.recipes:
            request["recipes"] = args.recipes.split(",")
        if args.reference is not None:  # left out: the server takes the model's approved version
            request["reference_version"] = None if args.reference.lower() == "none" else int(args.reference)
        audit = client.call("POST", "/api/v1/audits/", json_body=request)
        against = f" against version #{audit['reference_version']}" if audit.get("reference_version") else ""
        say(f"audit #{audit['id']} queued on {audit['target_queue']}{against}")
        deadline = time.monotonic() + args.timeout
        while True:
            status = client.call("GET", f"/api/v1/audits/{audit['id']}/status/")
            if status["finished"]:
                break
            if time.monotonic() > deadline:
                say(f"audit #{audit['id']} did not finish within {args.timeout} s (last stage: {status['stage']})")
                return EXIT_TIMEOUT
            say(f"  {status['status']}: {status['stage']} {status['progress']:.0f}%")
            sleep(args.poll)
        if status["status"] != "succeeded":
            say(f"audit #{audit['id']} {status['status']}: {status['error']}")
            return EXIT_AUDIT_FAILED
        detail = client.call("GET", f"/api/v1/audits/{audit['id']}/")
    except ApiError as exc:
        say(f"Energy Audit API error: {exc}")
        return EXIT_API_ERROR

    for line in describe_reference(detail):
        say(line)
    for result in detail["budget_results"]:
        say("  " + describe_limit(result))
    verdict = detail["budget_verdict"] or "no budget applies"
    say(f"audit #{detail['id']}: budgets {verdict}")
    return exit_status(detail["budget_verdict"], strict=args.strict, reference_verdict=detail.get("reference_verdict"))


def _number(value: float) -> str:
    """Three significant figures, no exponent: 1.12, 0.98, 1100."""
    return f"{float(f'{value:.3g}'):g}" if abs(value) < 1e6 else f"{value:.3g}"


def _ratio(value, interval) -> str:
    if value is None:
        return "—"
    text = f"×{_number(value)}"
    if interval and len(interval) == 2:
        text += f" [{_number(interval[0])}, {_number(interval[1])}]"
    return text


def describe_reference(detail: dict) -> list:
    """The comparison with the reference version, one line per batch size:
    "v7 vs v6 (approved): energy ×1.12 [1.05, 1.19], latency ×1.03 [0.98, 1.08]: costs more"."""
    reference, verdict = detail.get("reference"), detail.get("reference_verdict")
    if verdict is None:
        return ["no reference version: not compared with an earlier release"]
    title = f"{detail.get('version_label', 'this version')} vs {(reference or {}).get('label') or 'its reference'}"
    if not reference or reference.get("status") != "compared":
        why = (reference or {}).get("reason") or "the comparison's result was not stored (see the audit's warnings)"
        return [f"{title}: not compared: {why}"]
    lines = []
    for row in sorted(reference.get("per_batch_size") or [], key=lambda r: r.get("batch_size") or 0):
        grade = f" (grade {row['quality_grade']})" if row.get("quality_grade") else ""
        lines.append(f"  batch {row.get('batch_size')}: {title}: "
                     f"energy {_ratio(row.get('energy_ratio'), row.get('energy_ratio_ci95'))}, "
                     f"latency {_ratio(row.get('latency_ratio'), row.get('latency_ratio_ci95'))}: "
                     f"{row.get('verdict') or 'inconclusive'}{grade}")
    lines.append(f"audit #{detail['id']}: {title}: {verdict}")
    return lines


def describe_limit(result: dict) -> str:
    """One budget limit: its verdict, what was checked, and the reason the server gives
    ("385 mJ [117, 1270] > 10 mJ: fail (...)": the figure, its 95% interval and the limit)."""
    if result["passed"] is None:
        mark = "INCONCLUSIVE" if result.get("inconclusive") else "n/a"
    else:
        mark = "PASS" if result["passed"] else "FAIL"
    batch = f" batch {result['batch_size']}" if result["batch_size"] else ""
    reason = result.get("reason")  # older servers: no reason, the value and limit instead
    if not reason:
        value = "not measured" if result["value"] is None else f"{result['value']:.4g} {result['unit']}"
        reason = f"{value} (limit {result['threshold']:g} {result['unit']})"
    return f"{mark} {result['budget']}: {result['limit']} of {result['variant']}{batch}: {reason}"


def exit_status(budget_verdict: str, *, strict: bool = False, reference_verdict: str | None = None) -> int:
    if budget_verdict == "fail":
        return EXIT_BUDGET_FAILED
    if reference_verdict == "costs more":
        return EXIT_COSTS_MORE
    if strict and (budget_verdict == "inconclusive" or reference_verdict in UNDECIDED):
        return EXIT_INCONCLUSIVE
    return EXIT_PASS


def reference_arg(value: str) -> str:
    """A model version id or "none"."""
    if value.lower() != "none" and not value.isdigit():
        raise argparse.ArgumentTypeError("give a model version id (e.g. 42) or none")
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Upload a model, audit it against the approved version, fail when an "
                                                 "energy budget fails or the new version costs more.")
    parser.add_argument("model", help="model file: safetensors, ONNX, or a Hugging Face folder as a zip")
    parser.add_argument("--name", required=True, help="model name in Energy Audit")
    parser.add_argument("--label", default=os.environ.get("GIT_COMMIT", ""), help="version label (default $GIT_COMMIT)")
    parser.add_argument("--team", help="team slug (needed when your token's user is in several teams)")
    parser.add_argument("--task", default="classification")
    parser.add_argument("--target", default="cpu", help="hardware queue: cpu, gpu, ...")
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--recipes", default="", help="comma-separated, e.g. baseline,int8-dynamic")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the audit")
    parser.add_argument("--poll", type=float, default=10, help="seconds between status polls")
    parser.add_argument("--reference", default=None, metavar="VERSION_ID", type=reference_arg,
                        help="model version id to compare with in the same rounds, or 'none'; "
                             "default: the model's approved version (the latest whose latest audit was approved)")
    parser.add_argument("--strict", action="store_true",
                        help="also fail (exit 5) when a budget or the comparison with the reference is inconclusive")
    parser.add_argument("--url", default=os.environ.get("ENERGY_AUDIT_URL", "http://localhost:8000"))
    parser.add_argument("--token", default=os.environ.get("ENERGY_AUDIT_TOKEN", ""))
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not args.token:
        print("Set ENERGY_AUDIT_TOKEN (Account page -> Create token) or pass --token.", file=sys.stderr)
        return EXIT_API_ERROR
    return run(Client(args.url, args.token), args)


if __name__ == "__main__":
    sys.exit(main())
