"""Serving a language model at a load (issue 20): the room of the engine that measures a workload
served with continuous batching at each load level, and answers which variant at which level is
cheapest within the SLO.

| module | what it holds |
|---|---|
| ``workload`` | the JSONL format, the shipped default, prompts as token ids for one model |
| ``load`` | one pass: transformers' ContinuousBatchingManager, the closed and open loop, the steady window |
| ``figures`` | the figures of one level over one or more passes; energy attributed by tokens |
| ``rounds`` | every variant at every level in paired, interleaved rounds |
| ``answer`` | the cheapest variant x level within the SLO, the nearest miss, the frontier |
| ``flops`` | FLOPs per request and per output token of the workload |
| ``stage`` | what profile_model does for the serving scenario |

Nothing here imports torch or transformers at module import time (the web process checks
workloads and load levels with ``workload`` and ``load``).
"""

from .load import BACKEND, DEFAULT_OPTIONS, ServingError, backend_version, measure_serving, serve_level  # noqa: F401
