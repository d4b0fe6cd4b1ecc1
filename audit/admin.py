from django.contrib import admin

from . import models


class MembershipInline(admin.TabularInline):
    model = models.Membership
    extra = 0


@admin.register(models.Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "grid_region", "grid_intensity_g_per_kwh", "pue", "energy_boundary")
    prepopulated_fields = {"slug": ("name",)}
    inlines = [MembershipInline]


@admin.register(models.ModelAsset)
class ModelAssetAdmin(admin.ModelAdmin):
    list_display = ("name", "team", "task", "created_at")
    list_filter = ("team", "task")
    search_fields = ("name",)


@admin.register(models.ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("asset", "label", "format", "size_bytes", "sha256", "created_at")
    list_filter = ("format",)
    search_fields = ("asset__name", "label", "sha256")


@admin.register(models.Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("name", "team", "format", "task", "n_samples", "created_at")


class VariantInline(admin.TabularInline):
    model = models.Variant
    extra = 0
    fields = ("position", "recipe", "status", "params", "flops", "macs", "error")
    readonly_fields = fields


@admin.register(models.Audit)
class AuditAdmin(admin.ModelAdmin):
    list_display = ("id", "model_version", "status", "stage", "progress", "attempts", "target_queue", "created_at")
    list_filter = ("status", "target_queue", "review_status")
    inlines = [VariantInline]


@admin.register(models.Measurement)
class MeasurementAdmin(admin.ModelAdmin):
    list_display = ("variant", "batch_size", "latency_p50_ms", "energy_j_per_inference", "energy_method")
    list_filter = ("energy_method",)


@admin.register(models.WorkerNode)
class WorkerNodeAdmin(admin.ModelAdmin):
    list_display = ("hostname", "queue", "device", "last_seen")


admin.site.register(models.Evaluation)
admin.site.register(models.Review)


@admin.register(models.EnergyBudget)
class EnergyBudgetAdmin(admin.ModelAdmin):
    list_display = ("name", "team", "model_asset", "batch_size", "max_j_per_inference",
                    "max_wh_per_1000_inferences", "max_latency_p95_ms", "max_accuracy_drop", "active")
    list_filter = ("team", "active")
