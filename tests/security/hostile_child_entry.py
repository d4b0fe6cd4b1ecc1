"""A stand-in for an engine child that a model has taken over: it writes the protocol's JSON
lines itself, with whatever it likes in them (NaN and Infinity tokens included, which
``workers.engine.child`` would never write). Run as a script inside the real sandbox.

The request carries ``behaviour`` and ``doc`` (the result document to send):
- ``result``: send ``doc`` as the result;
- ``progress-flood``: first ``n_events`` progress events as fast as the pipe takes them
  (stage changing every ``stage_every`` events), then ``doc``;
- any behaviour: the request's ``events`` (a list) are sent first, as they are.
"""
import json
import sys


def send(out, event: dict) -> None:
    out.write(json.dumps(event, allow_nan=True) + "\n")  # what an attacker writes: NaN, Infinity


def main() -> int:
    request = json.loads(sys.stdin.read())
    out = sys.stdout
    for event in request.get("events") or []:
        send(out, event)
    if request["behaviour"] == "progress-flood":
        n, every = int(request["n_events"]), int(request.get("stage_every") or 1000)
        stages = ("loading", "counting-flops", "measuring", "evaluating")
        for i in range(n):
            send(out, {"event": "progress", "stage": stages[(i // every) % len(stages)], "percent": 100.0 * i / n,
                       "message": f"step {i}", "variant": 0, "n_variants": 1})
    send(out, {"event": "result", "result": request["doc"]})
    out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
