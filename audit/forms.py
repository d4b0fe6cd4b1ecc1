import json

from django import forms

from workers.engine import carbon
from workers.engine.registry import architecture_names

from .inputsafety import UnsafeJSON, loads_checked
from .models import Dataset, ModelVersion, Task
from .selectors import live_queues
from .services.options import OPTIONS
from .services.release import APPROVED


class TeamChoiceMixin:
    """A team picker that disappears when the user is in a single team."""

    def add_team_field(self, teams) -> None:
        self._only_team = teams.first() if teams.count() == 1 else None
        field = forms.ModelChoiceField(queryset=teams, empty_label=None, required=self._only_team is None)
        if self._only_team:
            field.widget = forms.HiddenInput()
            field.initial = self._only_team.pk
        self.fields["team"] = field

    def clean_team(self):
        return self.cleaned_data.get("team") or self._only_team


class ModelUploadForm(TeamChoiceMixin, forms.Form):
    name = forms.CharField(max_length=200, help_text="The model's name; a new upload under the same name is a new version.")
    label = forms.CharField(max_length=100, required=False, help_text="Version label, e.g. v2 or a git tag. Empty: v1, v2, ...")
    task = forms.ChoiceField(choices=Task.choices)
    file = forms.FileField(
        help_text="Hugging Face folder as a zip (config.json + safetensors), ONNX, or safetensors weights "
        "of a registered architecture. Pickled models are refused."
    )
    architecture = forms.ChoiceField(
        required=False,
        help_text="For bare safetensors weights: the registered architecture that builds the module "
        "(not needed when the file's metadata names it).",
    )
    architecture_config = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": '{"in_features": 64, "hidden": [128], "num_classes": 10}'}),
        help_text="JSON arguments for the architecture builder.",
    )
    seq_len = forms.IntegerField(required=False, min_value=1, max_value=32768, label="Sequence length",
                                 help_text="Text models: tokens per sample (default from the config, at most 128).")
    image_size = forms.IntegerField(required=False, min_value=8, max_value=4096,
                                    help_text="Vision models: input height and width in pixels.")
    inputs = forms.CharField(
        required=False, label="Input shapes",
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "pixel_values=3x224x224"}),
        help_text="NAME=DIMS[:DTYPE], one per line: one sample's shape, no batch dimension, e.g. "
                  "x=3x48x320:float32 for an ONNX model with dynamic dimensions (as the CLI's --input).",
    )

    def __init__(self, *args, teams, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_team_field(teams)
        self.fields["architecture"].choices = [("", "— from the file —")] + [(n, n) for n in architecture_names()]
        self.order_fields(["team", "name", "label", "task", "file"])

    def clean_architecture_config(self):
        raw = self.cleaned_data["architecture_config"].strip()
        if not raw:
            return {}
        try:
            value = loads_checked(raw)
        except UnsafeJSON as exc:  # NUL, a lone surrogate, or nested too deep
            raise forms.ValidationError(str(exc)) from exc
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).") from exc
        if not isinstance(value, dict):
            raise forms.ValidationError("Give a JSON object of builder arguments.")
        return value

    def clean_inputs(self):
        from workers.engine.inputs import InputOverrideError, input_overrides_from

        try:
            return input_overrides_from(self.cleaned_data["inputs"])
        except InputOverrideError as exc:
            raise forms.ValidationError(str(exc)) from exc

    def input_spec(self) -> dict:
        data = self.cleaned_data
        spec: dict = {}
        if data.get("architecture"):
            spec["architecture"] = data["architecture"]
        if data.get("architecture_config"):
            spec["architecture_config"] = data["architecture_config"]
        if data.get("seq_len"):
            spec["seq_len"] = data["seq_len"]
        if data.get("image_size"):
            spec["input_overrides"] = {"image_size": data["image_size"]}
        if data.get("inputs"):
            spec["input_overrides"] = dict(spec.get("input_overrides") or {}, **data["inputs"])
        return spec


class DatasetUploadForm(TeamChoiceMixin, forms.Form):
    name = forms.CharField(max_length=200)
    task = forms.ChoiceField(
        choices=Task.choices,
        help_text="The audit form offers a dataset to the models it fits, and says why it hides the others: the "
                  "same task (a classification dataset also fits text and image classifiers; Other fits any), "
                  "and inputs the model takes: text (CSV, JSONL, plain text) a Hugging Face model with its "
                  "tokenizer, plain text a language model (perplexity), arrays (NPZ) a model whose inputs "
                  "they name.")
    file = forms.FileField(help_text="CSV or JSONL with text and label, NPZ with inputs and labels, or plain text.")

    def __init__(self, *args, teams, **kwargs):
        super().__init__(*args, **kwargs)
        self.add_team_field(teams)
        self.order_fields(["team", "name", "task", "file"])


def _parse_int_list(raw: str, what: str) -> list[int]:
    try:
        values = sorted({int(part) for part in raw.replace(" ", "").split(",") if part})
    except ValueError as exc:
        raise forms.ValidationError(f"Give {what} as whole numbers separated by commas, e.g. 1,8.") from exc
    if not values:
        raise forms.ValidationError(f"Give at least one {what[:-1]}.")
    return values


class RecipeSpecsField(forms.MultipleChoiceField):
    """Ticked recipe names plus typed specs ("prune-unstructured:0.5, distill:200"; any posted
    value may hold several, comma-separated), checked by the engine's parser. Cleans to the
    specs as strings, which the engine takes as its ``recipes`` list."""

    def to_python(self, value):
        items = super().to_python(value)
        return [part.strip() for item in items for part in item.split(",") if part.strip()]

    def validate(self, value):
        if self.required and not value:
            raise forms.ValidationError(self.error_messages["required"], code="required")

    def clean(self, value):
        from workers.engine.recipes import RecipeSpecError, canonical_specs

        specs = super().clean(value)
        try:
            return canonical_specs(specs)
        except RecipeSpecError as exc:
            raise forms.ValidationError(str(exc), code="invalid_recipe") from exc


NO_REFERENCE = "none"

# The measurement options the audit form offers (the API takes all of OPTIONS).
FORM_OPTIONS = ("scenario", "prompt_tokens", "new_tokens", "concurrency", "request_rate",
                "slo_ttft_ms_p95", "slo_tpot_ms_p95",
                "latency_target_ms_p95", "timing_mode",
                # the constraints of the recommendation and of the latency-target answer
                "min_fidelity", "max_kl_divergence", "max_perplexity_increase_rel", "max_accuracy_drop",
                "max_metric_increase_rel", "min_saving", "equivalence_margin")


def option_form_field(o) -> forms.Field:
    """One measurement option (audit/services/options.py) as a form field, same range as the API."""
    common = {"required": False, "help_text": o.help, "label": o.label or None}
    if o.choices:
        return forms.ChoiceField(choices=[(c, c) for c in o.choices], initial=o.choices[0], **common)
    if o.kind is bool:
        return forms.BooleanField(**common)
    if o.kind is list:  # "1,4,16": checked by clean_engine_options, like the API's
        return forms.CharField(max_length=200, **common)
    if o.kind is int:
        return forms.IntegerField(min_value=int(o.low), max_value=int(o.high), **common)
    return forms.FloatField(min_value=o.low, max_value=o.high, **common)


class AuditRequestForm(forms.Form):
    target = forms.ChoiceField(label="Hardware", help_text="Queues with a live worker.")
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.none(), required=False, empty_label="— none —")
    batch_sizes = forms.CharField(initial="1,8", help_text="Comma-separated, e.g. 1,8,32.")
    recipes = RecipeSpecsField(
        widget=forms.CheckboxSelectMultiple,
        initial=["baseline"],
        help_text="Tick plain recipes; parameterised ones as text, e.g. prune-unstructured:0.5, distill:200.",
    )

    reference_version = forms.ChoiceField(
        required=False, label="Compare with",
        help_text="Another version measured in the same rounds (paired ratios: did this release cost more?). "
                  "Default: the model's approved version, when it has one.",
    )

    grid_region = forms.ChoiceField(
        required=False, label="Grid region",
        help_text="Yearly average grid carbon intensity (Ember via Our World in Data, CC-BY-4.0). "
                  "Empty: the team's setting.",
    )

    def __init__(self, *args, team, recipes, version=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.version = version  # the version posted for: its dataset must fit it
        for o in OPTIONS:
            if o.name in FORM_OPTIONS:
                self.fields[o.name] = option_form_field(o)
        self.fields["grid_region"].choices = [("", "— team setting —")] + carbon.regions()
        self.queues = live_queues()
        choices = [(q["queue"], f"{q['queue']}: {q['hardware']} ({q['workers']} worker{'s' if q['workers'] != 1 else ''})") for q in self.queues]
        if not choices:
            choices = [("cpu", "cpu: no worker online now; the audit waits in the queue")]
        self.fields["target"].choices = choices
        self.fields["dataset"].queryset = Dataset.objects.filter(team=team).order_by("name")
        self._reference_versions = ModelVersion.objects.filter(asset__team=team).select_related("asset")
        self.fields["reference_version"].choices = [
            (APPROVED, "— the approved version (default) —"), (NO_REFERENCE, "— none —"),
        ] + [(str(v.pk), str(v)) for v in self._reference_versions.order_by("asset__name", "-created_at", "-id")]
        self.fields["recipes"].choices = [(r, r) for r in recipes]

    def dataset_menu(self, version) -> dict:
        """The team's datasets that fit ``version``, and the others with why (audit/services/dataset_fit.py)."""
        from .services.dataset_fit import dataset_menu  # noqa: PLC0415

        if not hasattr(self, "_team_datasets"):
            self._team_datasets = list(self.fields["dataset"].queryset)
        offered, hidden = dataset_menu(version, self._team_datasets)
        chosen = self["dataset"].value() if self.is_bound and self.version == version else None
        return {"offered": offered, "hidden": hidden, "selected": str(chosen or "")}

    def clean_dataset(self):
        from .services.dataset_fit import why_not  # noqa: PLC0415

        dataset = self.cleaned_data.get("dataset")
        if dataset is not None and self.version is not None and (reason := why_not(self.version, dataset)):
            raise forms.ValidationError(f"{dataset.name} does not fit this model: {reason}.", code="dataset_unfit")
        return dataset

    def clean_batch_sizes(self):
        values = _parse_int_list(self.cleaned_data["batch_sizes"], "batch sizes")
        if values[0] < 1 or values[-1] > 4096:
            raise forms.ValidationError("Batch sizes must be between 1 and 4096.")
        if len(values) > 8:
            raise forms.ValidationError("At most 8 batch sizes per audit.")
        return values

    def clean_reference_version(self):
        """APPROVED, None, or a version of the team (audit_request checks it is not the audited one)."""
        value = self.cleaned_data.get("reference_version") or APPROVED
        if value == NO_REFERENCE:
            return None
        if value == APPROVED:
            return APPROVED
        version = self._reference_versions.filter(pk=value).first()
        if version is None:
            raise forms.ValidationError("That version was not found among your team's model versions.")
        return version

    @property
    def measurement_fields(self):
        return [self[name] for name in FORM_OPTIONS]

    def measurement_options(self) -> dict:
        return {k: self.cleaned_data.get(k) for k in FORM_OPTIONS}

    def device_for(self, queue: str) -> str:
        for q in self.queues:
            if q["queue"] == queue:
                return q["device"]
        return "cuda" if queue.startswith("gpu") else "cpu"
