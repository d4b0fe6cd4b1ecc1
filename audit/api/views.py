"""API views: thin. Reads come from audit.selectors (scoped to the user's teams, so another
team's object is a 404), writes go through audit.services (roles enforced there: a member
who tries a lead's action gets 403)."""
from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from ..models import EnergyBudget
from ..selectors import audits_for_user, datasets_for_user, model_assets_for_user, model_versions_for_user, teams_for_user
from ..services.audits import audit_cancel, audit_request
from ..services.budgets import budget_create, budget_delete, budget_update
from ..services.reviews import review_create, review_queue_for_user, teams_led_by
from ..services.uploads import dataset_upload, model_version_upload
from . import serializers as s
from .export import export_response
from .filters import AuditFilterSerializer, filter_audits


FILE_ERROR_CODES = {"format", "too_large", "empty", "architecture_needed", "architecture_unknown"}


def _upload(service, **kwargs):
    """Call an upload service; a refusal of the file itself is a 400 on the `file` field
    (as on the upload form), other refusals are non-field errors."""
    try:
        return service(**kwargs)
    except DjangoValidationError as exc:
        if getattr(exc, "code", None) in FILE_ERROR_CODES:
            raise ValidationError({"file": exc.messages}) from exc
        raise


def _upload_response(outcome, serializer_class, request):
    data = serializer_class(outcome.obj, context={"request": request}).data
    return Response(data, status=status.HTTP_201_CREATED if outcome.created else status.HTTP_200_OK)


@extend_schema_view(
    list=extend_schema(summary="Models of your teams"),
    retrieve=extend_schema(summary="A model with its versions", responses=s.ModelAssetDetailSerializer),
    create=extend_schema(
        summary="Upload a model version (multipart)",
        description="Checked from its content before anything is stored; an identical file already uploaded to "
        "the team is recognised (200, nothing new stored), else 201.",
        request=s.ModelUploadSerializer,
        responses={201: s.ModelVersionSerializer, 200: s.ModelVersionSerializer},
    ),
)
class ModelViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = s.ModelAssetSerializer
    parser_classes = [MultiPartParser, FormParser]

    def get_queryset(self):
        return model_assets_for_user(self.request.user).order_by("team__name", "name", "id")

    def get_serializer_class(self):
        return {"retrieve": s.ModelAssetDetailSerializer, "create": s.ModelUploadSerializer}.get(
            self.action, s.ModelAssetSerializer
        )

    def create(self, request):
        serializer = s.ModelUploadSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        outcome = _upload(
            model_version_upload,
            user=request.user, team=data["team"], asset_name=data["name"].strip(), task=data["task"],
            label=data["label"].strip(), uploaded=data["file"], input_spec=data["input_spec"],
        )
        return _upload_response(outcome, s.ModelVersionSerializer, request)


@extend_schema_view(list=extend_schema(summary="Model versions of your teams"), retrieve=extend_schema(summary="A model version"))
class ModelVersionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = s.ModelVersionSerializer

    def get_queryset(self):
        return model_versions_for_user(self.request.user).order_by("-created_at", "-id")


@extend_schema_view(
    list=extend_schema(summary="Datasets of your teams"),
    retrieve=extend_schema(summary="A dataset"),
    create=extend_schema(
        summary="Upload a dataset (multipart)", request=s.DatasetUploadSerializer,
        responses={201: s.DatasetSerializer, 200: s.DatasetSerializer},
    ),
)
class DatasetViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = s.DatasetSerializer
    parser_classes = [MultiPartParser, FormParser]

    def get_queryset(self):
        return datasets_for_user(self.request.user).order_by("team__name", "name", "id")

    def create(self, request):
        serializer = s.DatasetUploadSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        outcome = _upload(
            dataset_upload,
            user=request.user, team=data["team"], name=data["name"].strip(), task=data["task"], uploaded=data["file"]
        )
        return _upload_response(outcome, s.DatasetSerializer, request)


@extend_schema_view(
    list=extend_schema(summary="Audits of your teams, filtered", parameters=[AuditFilterSerializer]),
    retrieve=extend_schema(summary="An audit with its variants, measurements, evaluations, budget results and reviews"),
    create=extend_schema(summary="Request an audit", request=s.AuditRequestSerializer, responses={201: s.AuditSerializer}),
)
class AuditViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = s.AuditSerializer

    def get_queryset(self):
        return audits_for_user(self.request.user).order_by("-created_at", "-id")

    def get_serializer_class(self):
        return {"retrieve": s.AuditDetailSerializer, "status": s.AuditStatusSerializer}.get(self.action, s.AuditSerializer)

    def filter_queryset(self, queryset):
        if self.action == "list":
            queryset, _ = filter_audits(queryset, self.request.query_params)
        return queryset

    def create(self, request):
        serializer = s.AuditRequestSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        queue = data["target_queue"]
        audit = audit_request(
            user=request.user,
            model_version=data["model_version"],
            dataset=data.get("dataset"),
            target_queue=queue,
            device=data.get("device") or ("cuda" if queue.startswith("gpu") else "cpu"),
            batch_sizes=data.get("batch_sizes"),
            recipes=data.get("recipes"),
            grid_region=data.get("grid_region") or None,
            measurement=serializer.measurement_options(),
            reference_version=serializer.requested_reference(),
        )
        audit = self.get_queryset().get(pk=audit.pk)
        body = s.AuditSerializer(audit, context={"request": request}).data
        return Response(body, status=status.HTTP_201_CREATED, headers={"Location": body["url"]})

    @extend_schema(summary="Poll an audit's status (small; stop when finished is true)")
    @action(detail=True, methods=["get"])
    def status(self, request, pk=None):
        return Response(s.AuditStatusSerializer(self.get_object()).data)

    @extend_schema(summary="Cancel a queued or running audit", request=None,
                   responses={200: s.AuditStatusSerializer, 409: OpenApiResponse(description="The audit had already ended.")})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        audit = self.get_object()
        if not audit_cancel(audit=audit):
            return Response({"detail": "The audit had already ended."}, status=status.HTTP_409_CONFLICT)
        audit.refresh_from_db()
        return Response(s.AuditStatusSerializer(audit).data)

    @extend_schema(
        summary="The public link of the audit's energy badge: read it (GET), issue a new one or revoke it (POST, leads)",
        description="POST {\"action\": \"issue\"} gives the audit a new random link (any earlier one answers 404 "
        "from then on); {\"action\": \"revoke\"} removes it. The link needs no login: embed it in a README. "
        "Only a succeeded audit has a badge; a member gets 403.",
        request=s.BadgeLinkRequestSerializer, responses=s.BadgeLinkSerializer,
    )
    @action(detail=True, methods=["get", "post"], url_path="badge-link")
    def badge_link(self, request, pk=None):
        from ..services import badges

        audit = self.get_object()
        if request.method == "POST":
            body = s.BadgeLinkRequestSerializer(data=request.data)
            body.is_valid(raise_exception=True)
            if body.validated_data["action"] == "issue":
                badges.issue_badge_link(request.user, audit)
            else:
                badges.revoke_badge_link(request.user, audit)
        return Response(s.BadgeLinkSerializer(audit, context={"request": request}).data)

    @extend_schema(
        summary="Audits awaiting your review (teams you lead), oldest first, with their budget verdicts",
        responses=s.AuditSerializer(many=True),
    )
    @action(detail=False, methods=["get"], url_path="review-queue")
    def review_queue(self, request):
        page = self.paginate_queryset(review_queue_for_user(request.user))
        return self.get_paginated_response(s.AuditSerializer(page, many=True, context={"request": request}).data)


@extend_schema_view(
    list=extend_schema(summary="The review history of an audit, oldest first"),
    create=extend_schema(
        summary="Review an audit",
        description="A comment: any member of the team. approved / changes-requested: team leads only "
        "(a member gets 403); only a succeeded audit; changes-requested needs a comment. "
        "The audit's requester is emailed on each decision.",
        request=s.ReviewCreateSerializer,
        responses={201: s.ReviewSerializer},
    ),
)
class AuditReviewViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    serializer_class = s.ReviewSerializer

    def audit(self):
        return get_object_or_404(audits_for_user(self.request.user), pk=self.kwargs["audit_pk"])

    def get_queryset(self):
        return self.audit().reviews.select_related("reviewer").order_by("created_at", "id")

    def create(self, request, audit_pk=None):
        audit = self.audit()
        serializer = s.ReviewCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        review = review_create(user=request.user, audit=audit, **serializer.validated_data)
        return Response(s.ReviewSerializer(review).data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    list=extend_schema(summary="Energy budgets of your teams"),
    retrieve=extend_schema(summary="An energy budget"),
    create=extend_schema(summary="Set a budget (team leads)"),
    update=extend_schema(summary="Change a budget (team leads)"),
    partial_update=extend_schema(summary="Change a budget (team leads)"),
    destroy=extend_schema(summary="Delete a budget (team leads)"),
)
class BudgetViewSet(viewsets.ModelViewSet):
    """Every change re-checks the team's audits against its budgets."""

    serializer_class = s.BudgetSerializer

    def get_queryset(self):
        return (
            EnergyBudget.objects.filter(team__in=teams_for_user(self.request.user))
            .select_related("team", "model_asset", "created_by")
            .order_by("team__name", "name", "id")
        )

    def _require_lead(self, team=None):
        led = teams_led_by(self.request.user)
        if not (led.filter(pk=team.pk).exists() if team is not None else led.exists()):
            raise PermissionDenied("Only a team lead can set energy budgets.")

    def create(self, request, *args, **kwargs):
        self._require_lead()
        return super().create(request, *args, **kwargs)

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        serializer.instance = budget_create(user=self.request.user, **data)

    def update(self, request, *args, **kwargs):
        self._require_lead(self.get_object().team)
        return super().update(request, *args, **kwargs)

    def perform_update(self, serializer):
        changes = {k: v for k, v in serializer.validated_data.items() if k != "team"}
        serializer.instance = budget_update(user=self.request.user, budget=serializer.instance, **changes)

    def destroy(self, request, *args, **kwargs):
        budget = self.get_object()
        self._require_lead(budget.team)
        budget_delete(user=request.user, budget=budget)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AuditExportView(APIView):
    """One row per measurement of the filtered audits, streamed in constant memory."""

    fmt = "csv"

    def get(self, request):
        audits, _ = filter_audits(audits_for_user(request.user), request.query_params)
        return export_response(audits, self.fmt)


EXPORT_DESCRIPTION = (
    "One row per measurement of the audits the list's filters select, streamed whatever the row count. "
    "Columns: model, version, variant, batch size, hardware, energy method and every figure with its unit in "
    "its name (energy_j_per_inference, wh_per_1000_inferences, latency_p50_ms, ...); see docs/API.md."
)


class AuditCsvExportView(AuditExportView):
    fmt = "csv"

    @extend_schema(operation_id="audits_export_csv", summary="Export measurements as CSV", description=EXPORT_DESCRIPTION,
                   parameters=[AuditFilterSerializer], responses={(200, "text/csv"): OpenApiTypes.STR})
    def get(self, request):
        return super().get(request)


class AuditJsonExportView(AuditExportView):
    fmt = "json"

    @extend_schema(operation_id="audits_export_json", summary="Export measurements as JSON (an array of objects, CSV's columns as keys)",
                   description=EXPORT_DESCRIPTION, parameters=[AuditFilterSerializer],
                   responses={(200, "application/json"): {"type": "array", "items": {"type": "object"}}})
    def get(self, request):
        return super().get(request)
