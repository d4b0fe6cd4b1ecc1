"""A reference version in the same audit: did this release cost more than the one before?

Two audits measured at different times compare absolute figures that drift with the host by more
than most regressions. Instead the request names a ``reference`` (another version of the model:
its upload's path, format, label, sequence length and loading options, docs/ENGINE_INTERFACE.md)
and the engine measures the new version's baseline against the reference's baseline in the same
interleaved rounds, at every batch size: the reference takes a variant's place in every round,
bracketed by the baseline's windows (``rounds.py``, a comparator), so both see the same state of
the machine. Only the reference's baseline is measured, never its recipes.

Ratios are new / reference, with the paired interval and its sequential, between-run widening
(``sequential.py``); the verdict is the paired rule's, in words a release reader asks for:
"higher" is "costs more", "lower" "costs less".

Fair inputs. Both are fed the same inputs wherever they can be: the same seeded batches of the
same shapes (forward passes) or the same prompts and output lengths (generation). Where they
cannot (another tokenizer vocabulary, another image size), the section says what differed and the
ratio is per sample or per output token of each one's own inputs; where no sample of one is a
sample of the other (another task, another kind of input, forward passes against generation),
the comparison is refused with the reason. A reference that cannot be loaded or measured fails
the comparison, never the audit of the new version.

Fidelity between versions, where the inputs are the same: the new version's agreement with the
reference's outputs (``evaluation.Evaluator`` with the reference as its reference), reported, not
judged (a new version may differ on purpose).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import EngineError

COMPARED, REFUSED, FAILED = "compared", "refused", "failed"
PER_INFERENCE, PER_SAMPLE, PER_OUTPUT_TOKEN = "per inference", "per sample", "per output token"
# the paired rule's verdicts (constraints.paired_verdict), as a release reader asks
VERDICTS = {"higher": "costs more", "lower": "costs less", "no measurable difference": "no measurable difference",
            "inconclusive": "inconclusive"}
# input kinds whose samples are the same thing at another shape (an image, a text, a recording)
_SAMPLE_KINDS = ("text", "vision", "audio-waveform", "audio-spectrogram")
# the options a reference loads with; a key it does not give is the audit's own
_LOAD_KEYS = ("architecture", "architecture_config", "input_overrides")
_MEASUREMENT_KEYS = ("batch_size", "rounds", "latency_ms_mean", "latency_ms_p50", "latency_ms_p95",
                     "energy_j_per_inference", "energy_j_per_sample", "energy_j_per_request",
                     "energy_j_per_output_token", "energy_method", "energy_estimated", "quality_grade")


class Refused(Exception):
    """The two versions' costs do not compare; the message says why."""


@dataclass
class Reference:
    """One reference version: how to load it, what became of it, and its rounds' record."""

    label: str
    path: str
    format: str
    seq_len: int | None
    options: dict  # the audit's options with the reference's own loading options over them
    loaded: object = None
    status: str = COMPARED
    reason: str | None = None
    basis: str = PER_INFERENCE
    inputs: str = ""
    fidelity: dict | None = None
    # what rounds.measure_paired fills, as for a variant
    doc: dict = field(default_factory=dict)

    @classmethod
    def from_request(cls, spec, options: dict, seq_len: int | None) -> Reference | None:
        """The request's ``reference`` entry; None when it names none."""
        if not spec:
            return None
        if not isinstance(spec, dict) or not spec.get("path"):
            raise EngineError("the reference names no model path")
        own = spec.get("options") or {}
        merged = dict(options)
        merged.update({k: own[k] for k in _LOAD_KEYS if k in own})
        merged["input_overrides"] = dict(merged.get("input_overrides") or {})
        label = str(spec.get("label") or "reference").strip()[:60] or "reference"
        ref = cls(label=label, path=str(spec["path"]), format=spec.get("format") or "auto",
                  seq_len=spec["seq_len"] if spec.get("seq_len") is not None else seq_len, options=merged)
        ref.doc = {"recipe": f"reference {label}", "status": "succeeded", "error": "", "measurements": [],
                   "comparison": []}
        return ref

    @property
    def overrides(self) -> dict:
        return self.options["input_overrides"]

    def fail(self, status: str, reason: str) -> None:
        self.status, self.reason = status, " ".join(str(reason).split())

    @property
    def measurable(self) -> bool:
        return self.status == COMPARED and self.loaded is not None

    def load(self, device: str) -> None:
        """Load the reference like the main upload; a failure is the comparison's, not the audit's."""
        from .loaders import load_model

        try:
            self.loaded = load_model(self.path, self.format, self.options, device)
        except Exception as exc:  # noqa: BLE001 - whatever breaks the reference leaves the audit standing
            message = str(exc) if isinstance(exc, EngineError) else f"{type(exc).__name__}: {exc}"
            self.fail(FAILED, f"the reference could not be loaded: {message}")

    def check_inputs(self, new, new_scenario: dict, ref_scenario, seq_len, overrides) -> None:
        """Set ``basis`` and ``inputs``, or refuse the comparison with the reason. ``ref_scenario``:
        resolves the reference's scenario under the audit's options (raises EngineError)."""
        if not self.measurable:
            return
        try:
            check_tasks(new, self.loaded)
            try:
                scenario = ref_scenario()
            except EngineError as exc:
                raise Refused(f"the reference cannot be measured in this audit's scenario: {exc}") from None
            self.basis, self.inputs = fair_inputs(new, self.loaded, new_scenario, scenario,
                                                  (seq_len, overrides), (self.seq_len, self.overrides))
        except Refused as exc:
            self.fail(REFUSED, str(exc))
        except Exception as exc:  # noqa: BLE001 - inputs the reference cannot take: it cannot be measured
            message = str(exc) if isinstance(exc, EngineError) else f"{type(exc).__name__}: {exc}"
            self.fail(FAILED, f"no inputs could be built for the reference: {message}")

    def close(self) -> None:
        if self.loaded is not None:
            self.loaded.close()

    def settle(self, baseline_doc: dict | None, *, after_rounds: bool = True) -> None:
        """Refuse the comparison without the new version's baseline, fail it when that baseline
        or (``after_rounds``) the reference could not be measured."""
        if not self.measurable:
            return
        if self.doc["status"] != "succeeded":
            self.fail(FAILED, self.doc["error"] or "the reference could not be measured")
        elif baseline_doc is None:
            self.fail(REFUSED, "the new version's baseline is not among the recipes measured; the reference is "
                               "compared with the baseline")
        elif baseline_doc["status"] != "succeeded":
            self.fail(FAILED, f"the new version's baseline {baseline_doc['status']}: {baseline_doc['error']}")
        elif after_rounds and not self.doc["comparison"]:
            self.fail(FAILED, "no batch size gave paired rounds of the new version and the reference")

    def section(self) -> dict:
        """The result's ``reference`` section (docs/ENGINE_INTERFACE.md)."""
        measured = {m["batch_size"]: m for m in self.doc.get("measurements") or []}
        return {
            "label": self.label,
            "status": self.status,
            "reason": self.reason,
            "basis": self.basis,
            "inputs": self.inputs or ("not compared" if self.status != COMPARED else ""),
            "per_batch_size": [_batch_entry(c, measured.get(c["batch_size"]) or {})
                               for c in self.doc.get("comparison") or []],
            "fidelity": self.fidelity,
        }


def _batch_entry(c: dict, reference_m: dict) -> dict:
    """One batch size: the paired ratios new / reference, the verdicts in words, the grade."""
    return {
        "batch_size": c["batch_size"], "rounds": c["rounds"], "stopped_because": c.get("stopped_because"),
        "energy_ratio": c["energy_ratio"], "energy_ratio_ci95": c["energy_ratio_ci95"],
        "latency_ratio": c["latency_ratio"], "latency_ratio_ci95": c["latency_ratio_ci95"],
        "verdict": VERDICTS[c["verdict"]], "latency_verdict": VERDICTS[c["latency_verdict"]],
        "veto_reasons": list(c.get("veto_reasons") or []), "verdict_basis": c["verdict_basis"],
        "quality_grade": c["quality_grade"], "quality_reasons": list(c.get("quality_reasons") or []),
        "reference_measurement": {k: reference_m[k] for k in _MEASUREMENT_KEYS if reference_m.get(k) is not None},
    }


# --- fair inputs ---------------------------------------------------------------------------


def check_tasks(new, ref) -> None:
    """Refused when both tasks are known and differ."""
    if len({new.task, ref.task} - {None, "", "unknown"}) == 2:
        raise Refused(f"the reference is a {ref.task} model and the new version a {new.task} model: their costs "
                      "answer different questions")


def fair_inputs(new, ref, new_scenario: dict, ref_scenario: dict | None, new_inputs: tuple,
                ref_inputs: tuple) -> tuple[str, str]:
    """(basis, how both were fed) for the new version and the reference; raises Refused when
    their costs do not compare. ``*_inputs``: (seq_len, input overrides) each is measured with."""
    check_tasks(new, ref)
    ref_kind = (ref_scenario or {}).get("kind", "forward")
    if new_scenario["kind"] != ref_kind:
        what = {"generation": "generating text", "forward": "by forward passes"}
        raise Refused(f"the new version is measured {what[new_scenario['kind']]} and the reference "
                      f"{what[ref_kind]}: one request of one is not a request of the other")
    if new_scenario["kind"] == "generation":
        return _generation_inputs(new, ref, new_scenario)
    return _forward_inputs(new, ref, new_inputs, ref_inputs)


def _generation_inputs(new, ref, scenario: dict) -> tuple[str, str]:
    from .generation import prompt_token_ids

    prompt, out = int(scenario["prompt_tokens"]), int(scenario["new_tokens"])
    lengths = f"{prompt}-token prompts, {out} new tokens per sequence (EOS ignored)"
    new_ids, new_source = prompt_token_ids(new, prompt)
    ref_ids, ref_source = prompt_token_ids(ref, prompt)
    if new_ids[:prompt] == ref_ids[:prompt]:
        return PER_INFERENCE, f"the same prompts and lengths for both: {lengths}; prompts are {new_source}"
    return PER_OUTPUT_TOKEN, (f"the same lengths ({lengths}) but not the same prompt tokens: the new version's "
                              f"prompts are {new_source}, the reference's {ref_source} (their tokenizers or "
                              f"vocabularies differ: {_vocab(new)} against {_vocab(ref)}); compared per output token, "
                              "each generating the same number of tokens")


def _vocab(loaded) -> str:
    size = (loaded.config or {}).get("vocab_size") or (loaded.input_spec or {}).get("vocab_size")
    return f"a vocabulary of {size}" if size else "an unknown vocabulary"


def _forward_inputs(new, ref, new_inputs: tuple, ref_inputs: tuple) -> tuple[str, str]:
    a = new.make_inputs(1, new_inputs[0], new_inputs[1])
    b = ref.make_inputs(1, ref_inputs[0], ref_inputs[1])
    shapes_a, shapes_b = _per_sample(a.input_shape), _per_sample(b.input_shape)
    kind_a, kind_b = (new.input_spec or {}).get("kind"), (ref.input_spec or {}).get("kind")
    if shapes_a == shapes_b:
        if _same_values(a.values, b.values):
            return PER_INFERENCE, (f"the same inputs for both ({_describe(shapes_a)} per sample; the same seeded "
                                   "values at every batch size)")
        if kind_a in _SAMPLE_KINDS and kind_a == kind_b:
            why = (f"their vocabularies differ ({_vocab(new)} against {_vocab(ref)}), so the same positions hold "
                   "other token ids" if kind_a == "text" else "their inputs are drawn differently")
            return PER_SAMPLE, (f"the same shapes ({_describe(shapes_a)} per sample) but not the same values: {why}; "
                                "compared per sample")
        raise Refused(f"both take {_describe(shapes_a)} per sample, but not the same values, and these inputs "
                      "have no meaning the engine could match; give both the same input overrides")
    if kind_a in _SAMPLE_KINDS and kind_a == kind_b:
        return PER_SAMPLE, (f"not the same inputs: the new version takes {_describe(shapes_a)} per sample, the "
                            f"reference {_describe(shapes_b)} (each its own {kind_a} input); compared per sample, "
                            "the same number of samples per batch")
    raise Refused(f"the inputs differ: the new version takes {_describe(shapes_a)} per sample, the reference "
                  f"{_describe(shapes_b)}; a sample of one is not a sample of the other, so neither a cost per "
                  "inference nor one per sample compares")


def _per_sample(input_shape: dict) -> dict:
    """Each input's shape without its batch dimension (the shapes were built at batch size 1)."""
    return {name: list(shape[1:]) for name, shape in sorted(input_shape.items())}


def _describe(shapes: dict) -> str:
    return ", ".join(f"{name} [{', '.join(str(d) for d in dims)}]" for name, dims in shapes.items()) or "no inputs"


def _same_values(a: dict, b: dict) -> bool:
    import numpy as np

    if set(a) != set(b):
        return False
    for name in a:
        x, y = _as_numpy(a[name]), _as_numpy(b[name])
        if x.dtype != y.dtype or x.shape != y.shape or not np.array_equal(x, y):
            return False
    return True


def _as_numpy(value):
    import numpy as np

    if isinstance(value, np.ndarray):
        return value
    value = value.detach().cpu()
    return value.float().numpy() if str(value.dtype) == "torch.bfloat16" else value.numpy()


# --- fidelity between versions -------------------------------------------------------------


def measure_fidelity(ref: Reference, new, eval_data, batch_size: int) -> str | None:
    """The new version's agreement with the reference on the audit's evaluation inputs, where both
    took the same inputs; returns a warning when it could not be measured."""
    if not ref.measurable or ref.basis != PER_INFERENCE or eval_data is None:
        return None
    from .evaluation import Evaluator

    try:
        doc = Evaluator(ref.loaded, eval_data, batch_size=batch_size).evaluate(new)
    except Exception as exc:  # noqa: BLE001 - reported, never judged: a failure only loses the figure
        return f"fidelity to the reference {ref.label} could not be measured: {type(exc).__name__}: {exc}"
    value = doc.get("fidelity_value")
    if not isinstance(value, (int, float)) or value != value:  # no fidelity metric fits these outputs
        return f"fidelity to the reference {ref.label}: no metric fits these outputs"
    ref.fidelity = {"metric": doc["fidelity_metric"], "value": value,
                    "higher_is_better": bool(doc["fidelity_higher_is_better"])}
    return None


def summary_lines(section: dict | None) -> list[str]:
    """The CLI's lines: "vs v6: energy x1.12 [1.05, 1.19], latency x1.03 [0.98, 1.08]: costs more"."""
    if not section:
        return []
    label = section["label"]
    if section["status"] != COMPARED:
        return [f"vs {label}: {section['status']}: {section['reason']}"]
    lines = [f"vs {label}: {_ratio('energy', c['energy_ratio'], c['energy_ratio_ci95'])}, "
             f"{_ratio('latency', c['latency_ratio'], c['latency_ratio_ci95'])}: {c['verdict']} "
             f"(batch {c['batch_size']}, {section['basis']}, {c['rounds']} rounds, {c['stopped_because']})"
             for c in section["per_batch_size"]]
    lines.append(f"vs {label}: inputs: {section['inputs']}")
    fid = section.get("fidelity")
    if fid and fid.get("value") is not None:
        lines.append(f"vs {label}: fidelity {fid['metric']} {fid['value']:.4g} (reported, not judged)")
    return lines


def _ratio(name: str, ratio, ci) -> str:
    interval = f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else " [no interval]"
    return f"{name} x{ratio:.2f}{interval}"
