"""Reports people read: the audit report, comparing audits, a model's history, the team
overview and the embeddable energy badge."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from ..models import Audit, ModelVersion
from ..reports.ratings import min_group_size, rating_for_version, rating_spread, ratings_for_teams
from ..reports.report_page import audit_report_context
from ..reports.compare_page import MAX_COMPARE, compare_context
from ..reports.history_page import model_history_context
from ..reports import figures
from ..reports.overview import team_overview_context
from ..reports.progress import running_hardware
from ..services import badges
from ..selectors import (
    audits_for_user, flatten_fingerprint, live_queues, model_assets_for_user, teams_for_user,
)


def _int_param(request, name: str, *, minimum: float = 0, maximum: float = 1e12):
    try:
        value = float(request.GET.get(name, ""))
    except ValueError:
        return None
    return value if minimum <= value <= maximum else None


@login_required
def home(request):
    """The team overview: latest audits and their status, the most energy-hungry model
    versions, the spread of energy ratings, the hardware online."""
    teams = list(teams_for_user(request.user))
    ratings = ratings_for_teams([t.pk for t in teams])
    versions = ModelVersion.objects.select_related("asset").in_bulk([r.model_version_id for r in ratings[:10]])
    hungry = [{"rating": r, "version": versions.get(r.model_version_id)} for r in ratings[:10]]
    spread = rating_spread(ratings)
    overview = team_overview_context([t.pk for t in teams])
    return render(
        request,
        "audit/home.html",
        {
            "teams": teams,
            "models": model_assets_for_user(request.user)[:20],
            "audits": audits_for_user(request.user)[:15],
            "queues": live_queues(),
            "hungry": [h for h in hungry if h["version"] is not None],
            "spread": spread,
            "figures": {"chart-ratings": figures.rating_spread_figure(spread), **overview["overview_figures"]},
            "overview_models": overview["overview_models"],
            "overview_weeks": overview["overview_weeks"],
            "rating_min_group": min_group_size(),
        },
    )


@login_required
def audit_detail(request, pk: int):
    """The audit page: live progress while it runs, the full report once it has results."""
    audit = get_object_or_404(audits_for_user(request.user), pk=pk)
    batch = _int_param(request, "batch", minimum=1)
    max_drop = _int_param(request, "max_drop", maximum=100)
    qpd = _int_param(request, "queries_per_day")
    report = audit_report_context(
        audit, batch=int(batch) if batch else None, max_drop_pts=max_drop, queries_per_day=qpd
    )
    context = {
        "audit": audit,
        "report": report,
        "variants": report["variants"],
        "estimated": report["estimated"],
        "hardware": running_hardware(audit),
        "fingerprint_rows": flatten_fingerprint(audit.fingerprint),
        "can_manage_badge": bool(report["rating"]) and badges.is_lead(request.user, audit),
    }
    return render(request, "audit/audit_detail.html", context)


@login_required
def compare(request):
    """Pick 2 to 6 audits (versions of a model, or a model on different hardware) and see
    them side by side."""
    candidates = audits_for_user(request.user).filter(status=Audit.Status.SUCCEEDED)
    ids = []
    for raw in request.GET.getlist("a"):
        if raw.isdigit() and int(raw) not in ids:
            ids.append(int(raw))
    # The picker needs a few columns of the latest audits, not whole rows with their JSON.
    choices = candidates.order_by("-finished_at", "-id").values(
        "pk", "model_version__asset__name", "model_version__label", "target_queue", "device", "finished_at"
    )[:100]
    context = {"choices": choices, "selected": ids, "max_compare": MAX_COMPARE}
    if ids:
        if not 2 <= len(ids) <= MAX_COMPARE:
            messages.warning(request, f"Pick between 2 and {MAX_COMPARE} audits to compare.")
        else:
            found = candidates.in_bulk(ids)
            if len(found) != len(ids):
                raise Http404("No such audit.")
            # Oldest first: deltas then read as "what changed since".
            audits = sorted(found.values(), key=lambda a: (a.created_at, a.pk))
            context["compare"] = compare_context(
                audits, x=request.GET.get("x"), y=request.GET.get("y"), ref=request.GET.get("ref"))
    return render(request, "audit/compare.html", context)


@login_required
def model_history(request, pk: int):
    asset = get_object_or_404(model_assets_for_user(request.user), pk=pk)
    return render(request, "audit/model_history.html",
                  {"asset": asset, **model_history_context(asset, figure=request.GET.get("figure"))})


@require_GET
def badge(request, version_id: int):
    """An SVG badge with a model version's energy rating. Private to the team unless the
    team publishes its badges: anyone else gets a 404, as for any other team's object. To
    embed one anywhere, a lead issues the audit's public link (`public_badge`)."""
    version = ModelVersion.objects.select_related("asset__team").filter(pk=version_id).first()
    if version is None:
        raise Http404("No such badge.")
    team = version.asset.team
    member = request.user.is_authenticated and team.memberships.filter(user=request.user).exists()
    if not (team.publish_badges or member):
        raise Http404("No such badge.")
    svg = badges.badge_svg(rating_for_version(version.pk, task=version.asset.task), str(version))
    return _svg_response(svg, "public, max-age=300" if team.publish_badges else "private, no-store")


@require_GET
def public_badge(request, token: str):
    """The audit's badge at its public, unguessable link: no login; 404 once a lead revokes it."""
    audit = badges.audit_by_badge_token(token)
    if audit is None:
        raise Http404("No such badge.")
    rating = badges.audit_rating(audit)
    # the rating is the version's on the audit's hardware class: that of its latest audit there
    svg = badges.badge_svg(rating, f"{audit.model_version} (audit #{rating.audit_id if rating else audit.pk})")
    # Caches must ask again each time, so that a revoked link stops answering at once.
    return _svg_response(svg, "public, no-cache")


@login_required
@require_POST
def badge_link(request, pk: int):
    """Issue (or re-issue) or revoke the audit's public badge link; leads only."""
    audit = get_object_or_404(audits_for_user(request.user), pk=pk)
    action = request.POST.get("action")
    try:
        if action == "issue":
            badges.issue_badge_link(request.user, audit)
            messages.success(request, "Public badge link issued; any earlier link no longer works.")
        elif action == "revoke":
            badges.revoke_badge_link(request.user, audit)
            messages.success(request, "Public badge link revoked: it now answers 404.")
        else:
            return HttpResponseBadRequest("action must be issue or revoke")
    except PermissionDenied as exc:
        messages.error(request, str(exc))
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect(f"{audit.get_absolute_url()}#badge-link")


def _svg_response(svg: str, cache_control: str) -> HttpResponse:
    response = HttpResponse(svg, content_type="image/svg+xml")
    response["Cache-Control"] = cache_control
    response["X-Content-Type-Options"] = "nosniff"
    return response
