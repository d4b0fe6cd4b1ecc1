"""Requesting audits, following their progress, and the first report."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from ..forms import AuditRequestForm
from ..selectors import audits_for_user, model_versions_for_user
from ..services.audits import audit_cancel, audit_request

# htmx stops polling when a response has this status (django-htmx's HttpResponseStopPolling).
HTMX_STOP_POLLING = 286


def available_recipes() -> list[str]:
    from workers.engine.profile import RECIPES

    return list(RECIPES)


@login_required
def audit_list(request):
    return render(request, "audit/audit_list.html", {"audits": audits_for_user(request.user)[:200]})


@login_required
@require_http_methods(["GET", "POST"])
def audit_create(request, version_pk: int):
    version = get_object_or_404(model_versions_for_user(request.user), pk=version_pk)
    if request.method == "GET":
        # The address a form with errors was shown at: loading it again (a reload, a bookmark)
        # leads back to the model's page and its form, never to a 405.
        return redirect(version.get_absolute_url())
    form = AuditRequestForm(request.POST, team=version.asset.team, recipes=available_recipes(), version=version)
    if form.is_valid():
        data = form.cleaned_data
        try:
            audit = audit_request(
                user=request.user,
                model_version=version,
                dataset=data["dataset"],
                target_queue=data["target"],
                device=form.device_for(data["target"]),
                batch_sizes=data["batch_sizes"],
                recipes=data["recipes"],
                grid_region=data.get("grid_region") or None,
                measurement=form.measurement_options(),
                reference_version=data["reference_version"],
            )
        except ValidationError as exc:
            form.add_error("reference_version" if exc.code in ("reference_same", "reference_not_found") else None, exc)
        else:
            messages.success(request, f"Audit #{audit.pk} queued on {audit.target_queue}.")
            return redirect(audit)
    asset = version.asset
    return render(
        request,
        "audit/model_detail.html",
        {
            "asset": asset,
            "versions": asset.versions.order_by("-created_at"),
            "audits": audits_for_user(request.user).filter(model_version__asset=asset)[:50],
            "form": form,
            "form_version": version,
        },
        status=400,
    )


@login_required
def audit_progress(request, pk: int):
    """The live part of the audit page; once the audit has ended, htmx is told to stop polling
    and the page reloads itself to show the report."""
    from ..reports.progress import running_hardware  # noqa: PLC0415

    audit = get_object_or_404(audits_for_user(request.user), pk=pk)
    # The header's hardware too (out of band): it says "not known until a worker claims the
    # audit" while queued, and names the claiming worker's machine from the claim on.
    response = render(request, "audit/_progress.html",
                      {"audit": audit, "header_hardware": running_hardware(audit)})
    if audit.is_finished:
        response.status_code = HTMX_STOP_POLLING
        response["HX-Refresh"] = "true"
    return response


@login_required
@require_POST
def audit_cancel_view(request, pk: int):
    audit = get_object_or_404(audits_for_user(request.user), pk=pk)
    if audit_cancel(audit=audit):
        messages.info(request, f"Audit #{audit.pk} cancelled.")
    else:
        messages.warning(request, f"Audit #{audit.pk} had already ended.")
    return redirect(audit)


def healthz(request):
    return HttpResponse("ok", content_type="text/plain")
