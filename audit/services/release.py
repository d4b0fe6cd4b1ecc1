"""Issue 21, "did this release cost more?": which version an audit is measured against.

An audit may name a reference version (another version of the same team); the engine then
measures both baselines in the same interleaved rounds and reports new / reference ratios
(docs/ENGINE_INTERFACE.md, the result's "reference" section). Left unnamed, the reference is
the model's approved version: the latest version of the same model whose latest audit was
approved by a lead. Never the audited version itself: a version compared with itself says nothing.
"""
from django.core.exceptions import ValidationError
from django.db.models import OuterRef, Subquery

from ..models import Audit, ModelVersion

# The audit request's "use the approved version" (the API's key left out, the form's default).
APPROVED = "approved"


def approved_version(asset, *, exclude: ModelVersion | None = None) -> ModelVersion | None:
    """The latest version of ``asset`` whose latest audit is approved, or None."""
    latest_review = Audit.objects.filter(model_version=OuterRef("pk")).order_by("-created_at", "-id")
    versions = (ModelVersion.objects.filter(asset=asset)
                .annotate(latest_review=Subquery(latest_review.values("review_status")[:1]))
                .filter(latest_review=Audit.ReviewStatus.APPROVED)
                .order_by("-created_at", "-id"))
    if exclude is not None:
        versions = versions.exclude(pk=exclude.pk)
    return versions.select_related("asset").first()


def check_reference(model_version: ModelVersion, reference: ModelVersion) -> None:
    """A named reference: a version of the same team, not the audited one. Raises ValidationError
    with the reason; another team's version reads as not found (its existence is not told)."""
    if reference.asset.team_id != model_version.asset.team_id:
        raise ValidationError(f"Reference version {reference.pk} not found among your team's model versions.",
                              code="reference_not_found")
    if reference.pk == model_version.pk:
        raise ValidationError("The reference cannot be the audited version itself: a version compared with "
                              "itself says nothing. Name an earlier version, or none.", code="reference_same")


def reference_label(reference: ModelVersion, *, model_version: ModelVersion, approved: bool) -> str:
    """How the report names the reference: "v6 (approved)", or "other-model v2" across models."""
    label = reference.label if reference.asset_id == model_version.asset_id else str(reference)
    return f"{label} (approved)" if approved else label


def resolve_reference(model_version: ModelVersion, requested) -> tuple[ModelVersion | None, str]:
    """The reference an audit request ends with, and its label ("" for none).
    ``requested``: APPROVED (the default), None (no reference), or a ModelVersion."""
    if requested == APPROVED:
        reference = approved_version(model_version.asset, exclude=model_version)
        if reference is None:
            return None, ""
        return reference, reference_label(reference, model_version=model_version, approved=True)
    if requested is None:
        return None, ""
    check_reference(model_version, requested)
    approved = approved_version(requested.asset)
    is_approved = approved is not None and approved.pk == requested.pk
    return requested, reference_label(requested, model_version=model_version, approved=is_approved)
