#!/usr/bin/env python3
"""Fail a build when a model breaks its team's energy budget.

An ML pipeline step: upload the trained model to Energy Audit, request an audit, wait for it,
print the budget verdict per limit, and exit non-zero when a budget fails (with --strict, also
when a limit could not be decided). Standard library only (Python 3.9+), so it runs in any CI
image.

    export ENERGY_AUDIT_URL=https://energy-audit.example.org
    export ENERGY_AUDIT_TOKEN=...            # Account page -> "Create token"
    python audit_pipeline.py model.safetensors --name digits-mlp --label "$GIT_SHA" \
        --batch-sizes 1,8 --target cpu

Exit status: 0 every budget passed (or none applies), 1 a budget failed, 2 the audit failed
or was cancelled, 3 it did not finish in time, 4 an API error (bad token, refused upload...),
5 with --strict: no limit failed but some were inconclusive (the limit lies inside the
figure's 95% interval, or the measurement cannot carry a verdict). Without --strict an
inconclusive verdict exits 0 and says so: on a noisy runner, use --strict or a quieter one.
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
        audit = client.call("POST", "/api/v1/audits/", json_body=request)
        say(f"audit #{audit['id']} queued on {audit['target_queue']}")
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

    for result in detail["budget_results"]:
        say("  " + describe_limit(result))
    verdict = detail["budget_verdict"] or "no budget applies"
    say(f"audit #{detail['id']}: budgets {verdict}")
    return exit_status(detail["budget_verdict"], strict=args.strict)


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


def exit_status(budget_verdict: str, *, strict: bool = False) -> int:
    if budget_verdict == "fail":
        return EXIT_BUDGET_FAILED
    if budget_verdict == "inconclusive" and strict:
        return EXIT_INCONCLUSIVE
    return EXIT_PASS


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Upload a model, audit it, fail when an energy budget fails.")
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
    parser.add_argument("--strict", action="store_true",
                        help="also fail (exit 5) when a budget is inconclusive: a limit inside the figure's interval")
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
