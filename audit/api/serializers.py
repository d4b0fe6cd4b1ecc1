"""Representations. Figures keep their unit in their name (`energy_j_per_inference`,
`latency_p95_ms`, `wh_per_1000_inferences`); nothing is renamed to a bare "energy"."""
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..inputsafety import UnsafeJSON, loads_checked
from ..models import (
    Audit, Dataset, EnergyBudget, Evaluation, Measurement, ModelAsset, ModelVersion, Review, Task, Team, Variant,
)
from ..selectors import audit_report, describe_hardware, teams_for_user


@extend_schema_field(OpenApiTypes.STR)
class UserTeamField(serializers.SlugRelatedField):
    """A team of the requesting user, by slug; optional when the user is in exactly one team."""

    def __init__(self, **kwargs):
        kwargs.setdefault("slug_field", "slug")
        kwargs.setdefault("required", False)
        kwargs.setdefault("help_text", "The team's slug; may be left out by a user in a single team.")
        super().__init__(**kwargs)

    def get_queryset(self):
        request = self.context.get("request")
        return teams_for_user(request.user) if request is not None else Team.objects.none()


def _default_team(serializer, attrs: dict) -> dict:
    if attrs.get("team") is None:
        teams = list(teams_for_user(serializer.context["request"].user)[:2])
        if len(teams) != 1:
            raise serializers.ValidationError({"team": ["Name the team (its slug): you are in several teams or none."]})
        attrs["team"] = teams[0]
    return attrs


# --- models and datasets ----------------------------------------------------------------


class ModelVersionSerializer(serializers.ModelSerializer):
    model = serializers.IntegerField(source="asset_id", read_only=True)
    model_name = serializers.CharField(source="asset.name", read_only=True)
    team = serializers.CharField(source="asset.team.slug", read_only=True)
    uploaded_by = serializers.CharField(source="uploaded_by.username", read_only=True, default=None)

    class Meta:
        model = ModelVersion
        fields = [
            "id", "model", "model_name", "team", "label", "format", "format_detail", "sha256", "size_bytes",
            "input_spec", "uploaded_by", "created_at",
        ]
        read_only_fields = fields


class ModelAssetSerializer(serializers.ModelSerializer):
    team = serializers.CharField(source="team.slug", read_only=True)
    n_versions = serializers.IntegerField(read_only=True)

    class Meta:
        model = ModelAsset
        fields = ["id", "team", "name", "task", "n_versions", "created_at"]
        read_only_fields = fields


class ModelAssetDetailSerializer(ModelAssetSerializer):
    versions = serializers.SerializerMethodField()

    class Meta(ModelAssetSerializer.Meta):
        fields = ModelAssetSerializer.Meta.fields + ["versions"]
        read_only_fields = fields

    @extend_schema_field(ModelVersionSerializer(many=True))
    def get_versions(self, asset):
        versions = asset.versions.select_related("asset__team", "uploaded_by").order_by("-created_at", "-id")
        return ModelVersionSerializer(versions, many=True, context=self.context).data


class CheckedJSONField(serializers.JSONField):
    """A JSONField whose text from a form field is parsed by loads_checked: NUL, a lone
    surrogate or deep nesting is a 400 with its reason, not a 500 (JSON bodies are checked by
    audit.inputsafety's middleware)."""

    def to_internal_value(self, data):
        if getattr(data, "is_json_string", False):
            try:
                return loads_checked(data)
            except UnsafeJSON as exc:
                raise serializers.ValidationError(str(exc)) from exc
            except ValueError:
                self.fail("invalid")
        return super().to_internal_value(data)


class ModelUploadSerializer(serializers.Serializer):
    team = UserTeamField()
    name = serializers.CharField(max_length=200, help_text="The model's name; a new upload under a known name is a new version.")
    label = serializers.CharField(max_length=100, required=False, allow_blank=True, default="",
                                  help_text="Version label; empty: v1, v2, ...")
    task = serializers.ChoiceField(choices=Task.choices, default=Task.CLASSIFICATION)
    file = serializers.FileField(help_text="HF folder zip, ONNX, or safetensors of a registered architecture.")
    input_spec = CheckedJSONField(required=False, default=dict,
                                  help_text="Architecture and input overrides (JSON object), e.g. {\"seq_len\": 128}; "
                                            "\"inputs\": [\"pixel_values=3x224x224\"] sets input shapes "
                                            "(NAME=DIMS[:DTYPE], as the CLI's --input).")

    def validate_input_spec(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("Give a JSON object.")
        if "inputs" in value:
            from workers.engine.inputs import InputOverrideError, input_overrides_from

            entries = value["inputs"]
            if not isinstance(entries, (list, str)) or (isinstance(entries, list)
                                                         and not all(isinstance(e, str) for e in entries)):
                raise serializers.ValidationError('"inputs" is a list of "NAME=DIMS[:DTYPE]" strings.')
            value = dict(value)
            if not isinstance(value.get("input_overrides") or {}, dict):
                raise serializers.ValidationError('"input_overrides" is a JSON object.')
            try:
                value["input_overrides"] = input_overrides_from(value.pop("inputs"), value.get("input_overrides"))
            except InputOverrideError as exc:
                raise serializers.ValidationError(str(exc)) from exc
        return value

    def validate(self, attrs):
        return _default_team(self, attrs)


class DatasetSerializer(serializers.ModelSerializer):
    team = serializers.CharField(source="team.slug", read_only=True)

    class Meta:
        model = Dataset
        fields = ["id", "team", "name", "format", "task", "n_samples", "sha256", "size_bytes", "created_at"]
        read_only_fields = fields


class DatasetUploadSerializer(serializers.Serializer):
    team = UserTeamField()
    name = serializers.CharField(max_length=200)
    task = serializers.ChoiceField(choices=Task.choices, default=Task.CLASSIFICATION)
    file = serializers.FileField(help_text="CSV/JSONL with text and label, NPZ, or plain text.")

    def validate(self, attrs):
        return _default_team(self, attrs)


# --- audits -----------------------------------------------------------------------------


class MeasurementSerializer(serializers.ModelSerializer):
    class Meta:
        model = Measurement
        exclude = ["variant"]
        read_only_fields = [f.name for f in Measurement._meta.fields]


class EvaluationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Evaluation
        fields = ["id", "metric", "value", "n_samples", "fidelity", "labelled", "fidelity_metric", "fidelity_value",
                  "fidelity_higher_is_better"]
        read_only_fields = fields


class VariantSerializer(serializers.ModelSerializer):
    flops_per_sample = serializers.IntegerField(source="flops", read_only=True, allow_null=True)
    macs_per_sample = serializers.IntegerField(source="macs", read_only=True, allow_null=True)
    measurements = MeasurementSerializer(many=True, read_only=True)
    evaluations = EvaluationSerializer(many=True, read_only=True)
    serving = serializers.SerializerMethodField(
        help_text="A serving audit: the figures per load level (concurrency or request_rate, ttft/tpot/itl/e2e "
                  "_ms_p50/p95/p99, requests_per_s, output_tokens_per_s, energy_j_per_output_token, "
                  "energy_j_per_request, goodput_requests_per_s, energy_j_per_good_token, the steady window); "
                  "null otherwise. docs/ENGINE.md names each.")
    serving_comparison = serializers.SerializerMethodField(
        help_text="A serving audit: the paired ratio to the baseline per load level (energy_ratio_ci95 of J per "
                  "output token, latency_ratio_ci95 of TPOT p50, verdict, rounds); null otherwise.")

    @extend_schema_field({"type": "array", "items": {"type": "object"}, "nullable": True})
    def get_serving(self, obj):
        return (obj.details or {}).get("serving")

    @extend_schema_field({"type": "array", "items": {"type": "object"}, "nullable": True})
    def get_serving_comparison(self, obj):
        return (obj.details or {}).get("serving_comparison")

    class Meta:
        model = Variant
        fields = [
            "id", "position", "recipe", "recipe_params", "status", "error", "params", "nonzero_params", "size_bytes",
            "flops_per_sample", "macs_per_sample", "layer_profile", "notes", "comparison", "details", "measurements",
            "evaluations", "serving", "serving_comparison",
        ]
        read_only_fields = fields


class BudgetResultSerializer(serializers.Serializer):
    budget = serializers.CharField()
    budget_id = serializers.IntegerField(allow_null=True)
    limit = serializers.CharField(help_text="j_per_inference, wh_per_1000_inferences, latency_p95_ms, accuracy_drop, "
                                            "j_per_output_token, ttft_ms_p95, tpot_ms_p95, fidelity, "
                                            "energy_regression or latency_regression (unit ratio: new / reference, "
                                            "threshold 1 + the limit)")
    variant = serializers.CharField()
    batch_size = serializers.IntegerField(allow_null=True)
    value = serializers.FloatField(allow_null=True)
    threshold = serializers.FloatField()
    unit = serializers.CharField(help_text="J, Wh, ms, pp (percentage points) or ratio")
    passed = serializers.BooleanField(allow_null=True, help_text="true: the whole 95% interval is within the limit; "
                                      "false: wholly beyond it; null: not measured, or inconclusive")
    inconclusive = serializers.BooleanField(required=False, default=False,
                                            help_text="true: the limit lies inside the figure's 95% interval, or the "
                                                      "measurement cannot carry a verdict (no energy read...)")
    low = serializers.FloatField(required=False, allow_null=True, default=None,
                                 help_text="the 95% interval the limit was judged on (low, high), in `unit`; "
                                           "equal to `value` where none is stored; null when not measured")
    high = serializers.FloatField(required=False, allow_null=True, default=None)
    reason = serializers.CharField(required=False, allow_blank=True, default="",
                                   help_text='in words, e.g. "385 mJ [117, 1270] > 10 mJ: fail (...)"')
    quality_grade = serializers.CharField(required=False, allow_blank=True, default="",
                                          help_text="the measurement's grade, shown beside the result; it decides nothing")
    estimated = serializers.BooleanField()
    boundary = serializers.CharField(required=False, allow_null=True, default=None,
                                     help_text="the energy boundary a J or Wh limit was read at: device, host or "
                                               "facility (docs/ENGINE.md, \"Energy boundaries\"); null for other limits")
    not_applicable = serializers.BooleanField(required=False, default=False,
                                              help_text="true: a regression limit on an audit without a reference "
                                                        "version; shown, never a pass, no part in the verdict")


class ReviewSerializer(serializers.ModelSerializer):
    reviewer = serializers.CharField(source="reviewer.username", read_only=True, default=None)

    class Meta:
        model = Review
        fields = ["id", "audit", "reviewer", "decision", "comment", "created_at"]
        read_only_fields = ["id", "audit", "reviewer", "created_at"]


class ReviewCreateSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=Review.Decision.choices,
                                       help_text="approved and changes-requested: team leads only.")
    comment = serializers.CharField(required=False, allow_blank=True, default="")
    acknowledge_low_quality = serializers.BooleanField(
        required=False, default=False,
        help_text="Needed to approve an audit whose budget verdict is fail or inconclusive, or graded below C; "
                  "without it such an approval is refused (400) with the warning.")


class AuditSerializer(serializers.ModelSerializer):
    model = serializers.IntegerField(source="model_version.asset_id", read_only=True)
    model_name = serializers.CharField(source="model_version.asset.name", read_only=True)
    version_label = serializers.CharField(source="model_version.label", read_only=True)
    team = serializers.CharField(source="model_version.asset.team.slug", read_only=True)
    requested_by = serializers.CharField(source="requested_by.username", read_only=True, default=None)
    hardware = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()

    class Meta:
        model = Audit
        fields = [
            "id", "url", "team", "model", "model_name", "model_version", "version_label", "dataset", "status", "stage",
            "progress", "target_queue", "device", "hardware", "error", "review_status", "budget_verdict",
            "quality_grade", "requested_by", "created_at", "started_at", "finished_at", "reference_version",
        ]
        read_only_fields = fields

    def get_hardware(self, audit) -> str:
        return describe_hardware(audit.fingerprint) if audit.fingerprint else ""

    def get_url(self, audit) -> str:
        return f"/api/v1/audits/{audit.pk}/"


class BadgeLinkRequestSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=["issue", "revoke"])


class BadgeLinkSerializer(serializers.Serializer):
    """The audit's public badge link (issue 22): null until a lead issues one."""

    badge_url = serializers.SerializerMethodField(
        help_text="Absolute URL of the audit's energy badge (SVG, no login), or null when none is issued.")

    def get_badge_url(self, audit) -> str | None:
        if not audit.badge_token:
            return None
        from django.urls import reverse

        path = reverse("badge-public", args=[audit.badge_token])
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path


class AuditStatusSerializer(serializers.ModelSerializer):
    finished = serializers.BooleanField(source="is_finished", read_only=True)

    class Meta:
        model = Audit
        fields = [
            "id", "status", "finished", "stage", "progress", "progress_message", "heartbeat_at", "attempts", "error", "review_status",
            "budget_verdict", "started_at", "finished_at",
        ]
        read_only_fields = fields


class AuditDetailSerializer(AuditSerializer):
    variants = serializers.SerializerMethodField()
    budget_results = BudgetResultSerializer(many=True, read_only=True)
    reviews = serializers.SerializerMethodField()
    reference_verdict = serializers.SerializerMethodField(
        help_text="Did this version cost more than its reference? The worst energy verdict over the batch sizes "
                  "compared: \"costs more\", \"inconclusive\", \"no measurable difference\" or \"costs less\"; "
                  "\"not compared\" when a reference was asked for but the comparison was refused, failed or "
                  "dropped; null without a reference.")

    class Meta(AuditSerializer.Meta):
        fields = AuditSerializer.Meta.fields + [
            "options", "fingerprint", "engine_version", "schema_version", "scenario", "quality_reasons", "tradeoff",
            "carbon", "sandbox", "power_sweep", "frontier", "warnings", "drift", "attempts", "worker_hostname", "budget_results",
            "variants", "reviews", "reference", "reference_verdict",
        ]
        read_only_fields = fields

    def get_reference_verdict(self, audit) -> str | None:
        from ..reports.release import regression_verdict

        return regression_verdict(audit)

    @extend_schema_field(VariantSerializer(many=True))
    def get_variants(self, audit):
        return VariantSerializer(audit_report(audit), many=True, context=self.context).data

    @extend_schema_field(ReviewSerializer(many=True))
    def get_reviews(self, audit):
        reviews = audit.reviews.select_related("reviewer").order_by("created_at", "id")
        return ReviewSerializer(reviews, many=True, context=self.context).data


def _option_field(name: str) -> serializers.Field:
    """One measurement option (audit/services/options.py) as an API field, same name and range."""
    from ..services.options import OPTIONS

    o = next(o for o in OPTIONS if o.name == name)
    if o.choices:
        return serializers.ChoiceField(choices=list(o.choices), required=False, help_text=o.help)
    if o.kind is bool:
        return serializers.BooleanField(required=False, help_text=o.help)
    if o.kind is list:
        child = serializers.IntegerField(min_value=int(o.low), max_value=int(o.high)) if o.item is int else \
            serializers.FloatField(min_value=o.low, max_value=o.high)
        return serializers.ListField(child=child, required=False, max_length=8, help_text=o.help)
    if o.kind is int:
        return serializers.IntegerField(required=False, min_value=int(o.low), max_value=int(o.high), help_text=o.help)
    return serializers.FloatField(required=False, allow_null=True, min_value=o.low, max_value=o.high, help_text=o.help)


class AuditRequestSerializer(serializers.Serializer):
    model_version = serializers.PrimaryKeyRelatedField(queryset=ModelVersion.objects.none())
    dataset = serializers.PrimaryKeyRelatedField(queryset=Dataset.objects.none(), required=False, allow_null=True)
    reference_version = serializers.PrimaryKeyRelatedField(
        queryset=ModelVersion.objects.none(), required=False, allow_null=True,
        error_messages={"does_not_exist": "Reference version {pk_value} not found among your team's model versions."},
        help_text="A version of the same team measured against in the same audit (paired rounds; the result's "
                  "`reference`). Left out: the model's approved version (the latest version whose latest audit "
                  "was approved), if any. null: no reference. Never the audited version itself.",
    )
    target_queue = serializers.CharField(max_length=60, default="cpu", help_text="Hardware queue: cpu, gpu, gpu-h100...")
    device = serializers.ChoiceField(choices=["cpu", "cuda"], required=False,
                                     help_text="Default: cuda for gpu* queues, else cpu.")
    batch_sizes = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=4096), required=False,
                                        min_length=1, max_length=8)
    recipes = serializers.ListField(child=serializers.CharField(max_length=60), required=False, min_length=1)
    grid_region = serializers.CharField(
        max_length=20, required=False, allow_blank=True,
        help_text="Grid region code of the shipped yearly-average table (e.g. DE, FR, US, EU, WORLD); "
                  "empty: the team's setting. Looked up live where Electricity Maps is configured.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from ..selectors import datasets_for_user, model_versions_for_user

        request = self.context.get("request")
        if request is not None:  # None while the schema is generated
            self.fields["model_version"].queryset = model_versions_for_user(request.user)
            self.fields["reference_version"].queryset = model_versions_for_user(request.user)
            self.fields["dataset"].queryset = datasets_for_user(request.user)

    scenario = _option_field("scenario")
    prompt_tokens = _option_field("prompt_tokens")
    new_tokens = _option_field("new_tokens")
    concurrency = _option_field("concurrency")
    request_rate = _option_field("request_rate")
    slo_ttft_ms_p95 = _option_field("slo_ttft_ms_p95")
    slo_tpot_ms_p95 = _option_field("slo_tpot_ms_p95")
    latency_target_ms_p95 = _option_field("latency_target_ms_p95")
    timing_mode = _option_field("timing_mode")
    rounds = _option_field("rounds")
    power_limit_sweep = _option_field("power_limit_sweep")
    # the constraints of the recommendation and the SLO answer (workers/engine/constraints.py)
    min_fidelity = _option_field("min_fidelity")
    max_kl_divergence = _option_field("max_kl_divergence")
    max_perplexity_increase_rel = _option_field("max_perplexity_increase_rel")
    max_accuracy_drop = _option_field("max_accuracy_drop")
    max_metric_increase_rel = _option_field("max_metric_increase_rel")
    min_saving = _option_field("min_saving")
    equivalence_margin = _option_field("equivalence_margin")

    def validate_target_queue(self, value):
        """An audit for a queue no live worker serves would wait forever: refuse it, naming the
        live queues (the form offers only those)."""
        from django.core.exceptions import ValidationError as DjangoValidationError

        from ..selectors import live_queues
        from ..services.audits import check_target_queue

        try:
            check_target_queue(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from exc
        live = live_queues()
        if value not in {q["queue"] for q in live}:
            offered = ", ".join(f"{q['queue']} ({q['hardware']})" for q in live) or "none: no worker is online"
            raise serializers.ValidationError(f"No live worker serves the queue “{value}”. Live queues: {offered}.")
        return value

    def requested_reference(self):
        """What audit_request takes: the approved version when the key is left out, else the
        named version or None."""
        from ..services.release import APPROVED

        return self.validated_data.get("reference_version") if "reference_version" in self.validated_data else APPROVED

    def measurement_options(self) -> dict:
        from ..services.options import OPTION_NAMES

        return {k: self.validated_data[k] for k in OPTION_NAMES if self.validated_data.get(k) is not None}

    def validate_grid_region(self, value):
        from workers.engine import carbon

        code = carbon.normalise(value)
        if code and code not in carbon.table():
            raise serializers.ValidationError(f"“{value}” is not a grid region of the shipped table "
                                              f"(e.g. DE, FR, US, EU, WORLD).")
        return code

    def validate_recipes(self, value):
        """Plain names and parameterised specs ("prune-unstructured:0.5"), as the form takes them."""
        from workers.engine.recipes import RecipeSpecError, canonical_specs

        try:
            return canonical_specs(value)
        except RecipeSpecError as exc:
            raise serializers.ValidationError(str(exc)) from exc


# --- budgets ------------------------------------------------------------------------------


class BudgetSerializer(serializers.ModelSerializer):
    team = UserTeamField()
    model = serializers.PrimaryKeyRelatedField(
        source="model_asset", queryset=ModelAsset.objects.none(), required=False, allow_null=True,
        help_text="A model of the team; empty: every model of the team.",
    )
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)

    class Meta:
        model = EnergyBudget
        fields = [
            "id", "team", "model", "name", "batch_size", "boundary", "max_j_per_inference", "max_wh_per_1000_inferences",
            "max_latency_p95_ms", "max_accuracy_drop", "max_j_per_output_token", "max_ttft_ms_p95", "max_tpot_ms_p95",
            "min_fidelity", "max_energy_regression", "max_latency_regression", "active", "created_by", "created_at",
        ]
        read_only_fields = ["id", "created_by", "created_at"]
        extra_kwargs = {
            "max_j_per_inference": {"help_text": "J per inference (one batch) at the batch size."},
            "max_wh_per_1000_inferences": {"help_text": "Wh per 1,000 inferences."},
            "max_latency_p95_ms": {"help_text": "p95 latency in ms."},
            "max_accuracy_drop": {"help_text": "Largest drop from the baseline, in percentage points."},
            "max_j_per_output_token": {"help_text": "Generative models: J per output token (decode) at the batch size."},
            "max_ttft_ms_p95": {"help_text": "Generative models: time to first token, p95 in ms."},
            "max_tpot_ms_p95": {"help_text": "Generative models: time per output token, p95 in ms."},
            "min_fidelity": {"help_text": "Lowest fidelity to the baseline (cosine or agreement, 0-1); for variants "
                                          "without a labelled accuracy."},
            "max_energy_regression": {"help_text": "Release limit, a fraction (0.05 = 5%): fail when the paired energy "
                                                   "ratio against the audit's reference version (new / reference) has "
                                                   "its whole 95% interval above 1 + this; pass when wholly at or "
                                                   "below; inconclusive when it straddles. Not applicable (never a "
                                                   "pass) on an audit without a reference version."},
            "max_latency_regression": {"help_text": "The same on the paired latency ratio."},
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from ..selectors import model_assets_for_user

        request = self.context.get("request")
        if request is not None:
            self.fields["model"].queryset = model_assets_for_user(request.user)

    def validate(self, attrs):
        if self.instance is None:
            attrs = _default_team(self, attrs)
        elif "team" in attrs and attrs["team"] != self.instance.team:
            raise serializers.ValidationError({"team": ["A budget cannot move to another team."]})
        return attrs

