"""The data model of docs/ARCHITECTURE.md. Every object belongs to one team,
through its model or dataset; views reach objects only through selectors that
scope by the requesting user's teams."""
from django.conf import settings
from django.db import models
from django.urls import reverse


class Team(models.Model):
    name = models.CharField(max_length=120, unique=True)
    slug = models.SlugField(max_length=120, unique=True)
    grid_intensity_g_per_kwh = models.FloatField(null=True, blank=True)
    pue = models.FloatField(null=True, blank=True)
    carbon_source = models.CharField(max_length=200, blank=True)
    # A region code of the shipped grid-intensity table (workers/engine/data/grid_intensity.csv),
    # e.g. "DE", "US-CA", "EU", "WORLD". An explicit grid_intensity_g_per_kwh overrides it.
    grid_region = models.CharField(max_length=20, blank=True)
    # Energy badges of the team's model versions are private unless the team publishes them.
    publish_badges = models.BooleanField(default=False)
    # The energy boundary the team's budgets limit unless a budget names its own (issue 23):
    # device (the accelerator or CPU package), host (+ CPU and DRAM share), facility (host x PUE).
    energy_boundary = models.CharField(
        max_length=10, default="device", choices=[("device", "device"), ("host", "host"), ("facility", "facility")],
        help_text="The boundary budgets limit unless a budget names its own.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name

    def clean(self):
        """A region must be one of the shipped table's, or every audit of the team would be refused."""
        from django.core.exceptions import ValidationError  # noqa: PLC0415

        from workers.engine import carbon  # noqa: PLC0415

        super().clean()
        self.grid_region = carbon.normalise(self.grid_region)
        if self.grid_region and self.grid_region not in carbon.table():
            raise ValidationError({"grid_region": f"“{self.grid_region}” is not a region of the shipped table "
                                                  f"(e.g. DE, FR, US, EU, WORLD)."})


class Membership(models.Model):
    class Role(models.TextChoices):
        MEMBER = "member", "Member"
        LEAD = "lead", "Lead"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "team"], name="one_membership_per_team")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"


class Task(models.TextChoices):
    CLASSIFICATION = "classification", "Classification"
    TEXT_CLASSIFICATION = "text-classification", "Text classification"
    IMAGE_CLASSIFICATION = "image-classification", "Image classification"
    REGRESSION = "regression", "Regression"
    LANGUAGE_MODELING = "language-modeling", "Language modelling"
    FEATURE_EXTRACTION = "feature-extraction", "Feature extraction"
    OTHER = "other", "Other"


class ModelAsset(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="model_assets")
    name = models.CharField(max_length=200)
    task = models.CharField(max_length=40, choices=Task.choices, default=Task.CLASSIFICATION)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="model_name_unique_in_team")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("model-detail", args=[self.pk])


def model_upload_to(instance: "ModelVersion", filename: str) -> str:
    return f"models/{instance.asset.team_id}/{instance.sha256[:2]}/{instance.sha256}/{filename}"


def dataset_upload_to(instance: "Dataset", filename: str) -> str:
    return f"datasets/{instance.team_id}/{instance.sha256[:2]}/{instance.sha256}/{filename}"


class ModelVersion(models.Model):
    asset = models.ForeignKey(ModelAsset, on_delete=models.CASCADE, related_name="versions")
    label = models.CharField(max_length=100)
    file = models.FileField(upload_to=model_upload_to, max_length=500)
    format = models.CharField(max_length=30)
    format_detail = models.CharField(max_length=300, blank=True)
    sha256 = models.CharField(max_length=64, db_index=True)
    size_bytes = models.BigIntegerField()
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    # Architecture (for bare weights) and input overrides: sequence length, image size...
    input_spec = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["asset", "label"], name="version_label_unique")]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.asset.name} {self.label}"

    def get_absolute_url(self) -> str:
        return reverse("model-detail", args=[self.asset_id]) + f"#version-{self.pk}"


class Dataset(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="datasets")
    name = models.CharField(max_length=200)
    file = models.FileField(upload_to=dataset_upload_to, max_length=500)
    format = models.CharField(max_length=20)
    task = models.CharField(max_length=40, choices=Task.choices, default=Task.CLASSIFICATION)
    n_samples = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64, db_index=True)
    size_bytes = models.BigIntegerField()
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="dataset_name_unique_in_team")]
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("dataset-list") + f"#dataset-{self.pk}"


class Audit(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    class ReviewStatus(models.TextChoices):
        NOT_READY = "not-ready", "Not ready"
        PENDING = "pending", "Awaiting review"
        APPROVED = "approved", "Approved"
        CHANGES_REQUESTED = "changes-requested", "Changes requested"

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="audits")
    dataset = models.ForeignKey(Dataset, null=True, blank=True, on_delete=models.SET_NULL, related_name="audits")
    target_queue = models.CharField(max_length=60, default="cpu")
    device = models.CharField(max_length=20, default="cpu")
    # batch_sizes, recipes, engine knobs, carbon intensity/PUE/source: everything the run used.
    options = models.JSONField(default=dict)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED, db_index=True)
    stage = models.CharField(max_length=60, blank=True)
    progress = models.FloatField(default=0.0)
    # the engine's own words for what it is doing now ("measuring int8-dynamic at batch 8 ...")
    progress_message = models.CharField(max_length=300, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # When the task was last handed to the broker; the reaper sends it again if a queued
    # audit's message was lost (a broker restart, a failed dispatch).
    dispatched_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    worker_hostname = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    fingerprint = models.JSONField(default=dict, blank=True)
    engine_version = models.CharField(max_length=20, blank=True)
    warnings = models.JSONField(default=list, blank=True)
    # The baseline measured first and again last: relative change per batch size (thermal drift).
    drift = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    review_status = models.CharField(
        max_length=20, choices=ReviewStatus.choices, default=ReviewStatus.NOT_READY, db_index=True
    )
    # Verdict against the team's energy budgets: "" until checked, then pass or fail,
    # with one entry per limit in budget_results.
    budget_verdict = models.CharField(max_length=12, blank=True, db_index=True)
    budget_results = models.JSONField(default=list, blank=True)
    # Schema 2 of the engine's result (docs/ENGINE_INTERFACE.md); empty for audits stored before.
    schema_version = models.PositiveSmallIntegerField(default=1)
    # forward passes or the generation scenario: {"kind", "prompt_tokens", "new_tokens", "backend"}
    scenario = models.JSONField(default=dict, blank=True)
    # The audit's quality grade (A-D; "" for v1 results) and why: the worst of the baseline's
    # measurements and the paired comparisons the verdict rests on (workers/engine/quality.py).
    quality_grade = models.CharField(max_length=1, blank=True, db_index=True)
    quality_reasons = models.JSONField(default=list, blank=True)
    # The engine's own trade-off (recommendation from paired ratios, SLO answer), the carbon
    # basis with its provenance, the sandbox that ran the child, a GPU power-limit sweep.
    tradeoff = models.JSONField(null=True, blank=True)
    carbon = models.JSONField(default=dict, blank=True)
    sandbox = models.JSONField(default=dict, blank=True)
    power_sweep = models.JSONField(null=True, blank=True)
    # energy against latency per variant over batch sizes (and power limits when swept), with the
    # cheapest setting within the latency target (workers/engine/frontier.py)
    frontier = models.JSONField(null=True, blank=True)
    # Issue 21: the version this one is measured against in the same audit (paired, interleaved
    # rounds of both baselines), and the engine's validated "reference" section of the result
    # (None until stored, or when the section was malformed; see audit/services/results.py).
    reference_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="referenced_by_audits",
    )
    reference = models.JSONField(null=True, blank=True)
    # where the engine's wall time went: windows, warm-up, the rest (workers/engine/profile_result.py)
    run_timing = models.JSONField(null=True, blank=True)
    # when the engine expects its measuring to end (its progress events' eta_s, from measured times)
    measuring_ends_at = models.DateTimeField(null=True, blank=True)
    # Issue 22: the public, unguessable link of the audit's energy badge (/badges/a/<token>.svg),
    # None until a lead issues one; revoking clears it (the old link then answers 404).
    badge_token = models.CharField(max_length=64, null=True, blank=True, unique=True, default=None)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="audit_status_heartbeat")]
        constraints = [
            # a version compared with itself says nothing (audit/services/release.py refuses it first)
            models.CheckConstraint(condition=~models.Q(reference_version=models.F("model_version")),
                                   name="audit_reference_is_another_version"),
        ]

    def __str__(self) -> str:
        return f"Audit #{self.pk} of {self.model_version}"

    def get_absolute_url(self) -> str:
        return reverse("audit-detail", args=[self.pk])

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED


class Variant(models.Model):
    class Status(models.TextChoices):
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

    audit = models.ForeignKey(Audit, on_delete=models.CASCADE, related_name="variants")
    position = models.PositiveSmallIntegerField(default=0)
    recipe = models.CharField(max_length=60)
    recipe_params = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices)
    error = models.TextField(blank=True)
    params = models.BigIntegerField(null=True)
    nonzero_params = models.BigIntegerField(null=True)
    size_bytes = models.BigIntegerField(null=True)
    flops = models.BigIntegerField(null=True, help_text="floating-point operations per inference (2 per multiply-add)")
    macs = models.BigIntegerField(null=True, help_text="multiply-accumulate operations per inference")
    layer_profile = models.JSONField(default=list, blank=True)
    # What a reader must know about this variant, e.g. that masked pruning saves nothing on
    # dense kernels, or which backend a quantisation recipe used.
    notes = models.JSONField(default=list, blank=True)
    # Paired comparison with the baseline, one entry per batch size (empty for the baseline
    # and for v1 results): ratios variant/baseline with 95% intervals, verdict, grade.
    comparison = models.JSONField(default=list, blank=True)
    # What else the engine said about the variant (dtype it ran in, stored dtype ...).
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["audit", "position"]

    def __str__(self) -> str:
        return f"{self.recipe} ({self.status})"


class Measurement(models.Model):
    variant = models.ForeignKey(Variant, on_delete=models.CASCADE, related_name="measurements")
    batch_size = models.PositiveIntegerField()
    input_shape = models.JSONField(default=dict)
    latency_mean_ms = models.FloatField()
    # Per-call figures exist in latency timing mode only; throughput mode leaves them empty.
    latency_std_ms = models.FloatField(null=True)
    latency_p50_ms = models.FloatField(null=True)
    latency_p95_ms = models.FloatField(null=True)
    latency_p99_ms = models.FloatField(null=True)
    # None when a single call was all the time cap allowed: no interval can be computed.
    latency_ci95_ms = models.FloatField(null=True)
    throughput_samples_per_s = models.FloatField()
    energy_j_per_inference = models.FloatField(db_index=True)
    energy_j_per_inference_active = models.FloatField()
    energy_j_per_sample = models.FloatField()
    wh_per_1000_inferences = models.FloatField(db_index=True)
    samples_per_joule = models.FloatField()
    avg_power_w = models.FloatField()
    idle_power_w = models.FloatField()
    energy_method = models.CharField(max_length=30)
    energy_estimated = models.BooleanField()
    energy_uncertainty_rel = models.FloatField()
    co2e_g_per_inference = models.FloatField()
    peak_memory_bytes = models.BigIntegerField(null=True)
    iterations = models.PositiveIntegerField()
    windows = models.PositiveIntegerField()
    window_s = models.FloatField()
    cv = models.FloatField(null=True)
    power_trace = models.JSONField(default=list, blank=True)
    flags = models.JSONField(default=list, blank=True)
    # ---- schema 2 (null or empty for measurements stored before it)
    scenario = models.CharField(max_length=12, default="forward")
    timing_mode = models.CharField(max_length=12, default="latency")
    quality_grade = models.CharField(max_length=1, blank=True)
    quality_reasons = models.JSONField(default=list, blank=True)
    latency_ci95_rel = models.FloatField(null=True)
    window_cv = models.FloatField(null=True)
    energy_uncertainty_method_rel = models.FloatField(null=True)
    energy_uncertainty_stat_rel = models.FloatField(null=True)
    # every assumed figure of an estimate (None for a hardware meter); RAPL domains per inference
    energy_assumptions = models.JSONField(null=True, blank=True)
    energy_domains = models.JSONField(default=dict, blank=True)
    # issue 23: which boundary energy_j_per_inference is, every boundary measured or estimated
    # with its method (workers/engine/meters/boundary.py), and the one the grams of CO2e rest on
    energy_boundary = models.CharField(max_length=10, default="device")
    energy_boundaries = models.JSONField(default=dict, blank=True)
    co2e_boundary = models.CharField(max_length=10, default="device")
    meter_resolution_s = models.FloatField(null=True)
    meter_overhead_s = models.FloatField(null=True)
    # the evidence behind the interval: one mean per window
    window_means_ms = models.JSONField(default=list, blank=True)
    window_energy_j = models.JSONField(default=list, blank=True)
    # the paired comparison with the baseline at this batch size (None for the baseline)
    comparison = models.JSONField(null=True, blank=True)
    # generation scenario (None on forward measurements)
    prompt_tokens = models.PositiveIntegerField(null=True)
    new_tokens = models.PositiveIntegerField(null=True)
    ttft_ms_p50 = models.FloatField(null=True)
    ttft_ms_p95 = models.FloatField(null=True)
    tpot_ms_p50 = models.FloatField(null=True)
    tpot_ms_p95 = models.FloatField(null=True)
    output_tokens_per_s = models.FloatField(null=True)
    energy_j_per_prompt_token = models.FloatField(null=True)
    energy_j_per_output_token = models.FloatField(null=True, db_index=True)
    # decode = request - prefill: its statistical part is larger than the request's
    energy_j_per_output_token_uncertainty_rel = models.FloatField(null=True)
    energy_j_per_request = models.FloatField(null=True)
    prefill_energy_share = models.FloatField(null=True)
    backend = models.CharField(max_length=20, blank=True)
    # GPU state over the windows (NVML): clocks, temperature, power limit, throttle reasons
    power_limit_w = models.FloatField(null=True)
    device_state = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["variant", "batch_size"]

    def boundary_figure(self, boundary: str) -> dict | None:
        """{"j_per_inference", "method", "estimated", "uncertainty_rel", ...} of one boundary, or
        None where the audit did not record it (results before issue 23 know the device only)."""
        entry = (self.energy_boundaries or {}).get(boundary)
        if entry is None and boundary == (self.energy_boundary or "device"):
            return {"j_per_inference": self.energy_j_per_inference, "method": self.energy_method,
                    "estimated": self.energy_estimated, "uncertainty_rel": self.energy_uncertainty_rel}
        return entry

    def __str__(self) -> str:
        return f"{self.variant} @ batch {self.batch_size}"


class Evaluation(models.Model):
    variant = models.ForeignKey(Variant, on_delete=models.CASCADE, related_name="evaluations")
    # The labelled metric; empty without a labelled dataset (fidelity is always there in schema 2).
    metric = models.CharField(max_length=40, blank=True)
    value = models.FloatField(null=True)
    n_samples = models.PositiveIntegerField()
    fidelity = models.JSONField(default=dict, blank=True)
    labelled = models.BooleanField(default=True)
    # The task's headline fidelity to the baseline (embedding_cosine, top1_agreement, relative_error)
    fidelity_metric = models.CharField(max_length=40, blank=True)
    fidelity_value = models.FloatField(null=True)
    fidelity_higher_is_better = models.BooleanField(default=True)

    def __str__(self) -> str:
        if self.metric:
            return f"{self.metric}={self.value:.4g}"
        return f"{self.fidelity_metric}={self.fidelity_value:.4g}" if self.fidelity_value is not None else "no figure"


class WorkerNode(models.Model):
    hostname = models.CharField(max_length=200, unique=True)
    queue = models.CharField(max_length=60, db_index=True)
    device = models.CharField(max_length=20, default="cpu")
    fingerprint = models.JSONField(default=dict)
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["queue", "hostname"]

    def __str__(self) -> str:
        return f"{self.hostname} ({self.queue})"


class Review(models.Model):
    class Decision(models.TextChoices):
        APPROVED = "approved", "Approved"
        CHANGES_REQUESTED = "changes-requested", "Changes requested"
        COMMENT = "comment", "Comment"

    audit = models.ForeignKey(Audit, on_delete=models.CASCADE, related_name="reviews")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    decision = models.CharField(max_length=20, choices=Decision.choices)
    comment = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{self.decision} by {self.reviewer}"


class EnergyBudget(models.Model):
    """Limits a team lead sets; every audit of the team (or of one model) is checked against them.
    A limit left empty is not checked."""

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="budgets")
    model_asset = models.ForeignKey(
        ModelAsset, null=True, blank=True, on_delete=models.CASCADE, related_name="budgets",
        help_text="Empty: the budget applies to every model of the team.",
    )
    name = models.CharField(max_length=120)
    batch_size = models.PositiveIntegerField(
        null=True, blank=True, help_text="The batch size the limits apply at; empty: every measured batch size."
    )
    max_j_per_inference = models.FloatField(null=True, blank=True)
    max_wh_per_1000_inferences = models.FloatField(null=True, blank=True)
    max_latency_p95_ms = models.FloatField(null=True, blank=True)
    max_accuracy_drop = models.FloatField(
        null=True, blank=True, help_text="Largest accepted drop from the baseline, in percentage points."
    )
    # Generative models: the same limits in tokens (checked on generation measurements only).
    max_j_per_output_token = models.FloatField(null=True, blank=True)
    max_ttft_ms_p95 = models.FloatField(null=True, blank=True)
    max_tpot_ms_p95 = models.FloatField(null=True, blank=True)
    min_fidelity = models.FloatField(
        null=True, blank=True,
        help_text="Lowest accepted fidelity to the baseline (e.g. 0.98 cosine or agreement); "
                  "used where there is no labelled accuracy.",
    )
    # Release regressions against the audit's reference version (issue 21), as a fraction:
    # 0.05 fails when the new / reference ratio's whole 95% interval lies above 1.05.
    max_energy_regression = models.FloatField(
        null=True, blank=True, verbose_name="Max energy regression against the reference (e.g. 0.05 = 5%)",
        help_text="Checked on audits with a reference version: fail when the energy ratio's whole 95% interval "
                  "lies above 1 + this.",
    )
    max_latency_regression = models.FloatField(
        null=True, blank=True, verbose_name="Max latency regression against the reference (e.g. 0.05 = 5%)",
        help_text="As the energy regression, on the latency ratio.",
    )
    # The energy boundary the energy limits apply to (issue 23); empty: the team's.
    boundary = models.CharField(
        max_length=10, blank=True, choices=[("device", "device"), ("host", "host"), ("facility", "facility")],
        help_text="The energy boundary the energy limits apply to: device, host (+ CPU and DRAM share) or "
                  "facility (host x PUE). Empty: the team's.",
    )
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["team", "name"]

    def __str__(self) -> str:
        return self.name
