"""Reports people read: the audit report, comparing audits, a model's history, the team
overview and the embeddable energy badge."""
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET

from ..models import Audit, ModelVersion
from ..reports.ratings import rating_for_version, rating_spread, ratings_for_teams
from ..reports.report_page import audit_report_context
from ..reports.compare_page import MAX_COMPARE, compare_context
from ..reports.history_page import model_history_context
from ..reports import figures, formatting as units
from ..reports.overview import team_overview_context
from ..reports.progress import running_hardware
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


BADGE_COLORS = {1: "#b42318", 2: "#dc6803", 3: "#b98900", 4: "#4c8c16", 5: "#0b6e4f"}


@require_GET
def badge(request, version_id: int):
    """An SVG badge with a model version's energy rating. Private to the team unless the
    team publishes its badges: anyone else gets a 404, as for any other team's object."""
    version = ModelVersion.objects.select_related("asset__team").filter(pk=version_id).first()
    if version is None:
        raise Http404("No such badge.")
    team = version.asset.team
    member = request.user.is_authenticated and team.memberships.filter(user=request.user).exists()
    if not (team.publish_badges or member):
        raise Http404("No such badge.")
    rating = rating_for_version(version.pk, task=version.asset.task)
    if rating is None:
        value, color = "unrated", "#5b6475"
    else:
        estimated = " est." if rating.estimated else ""
        value = f"{rating.rating}/5 · {units.wh(rating.wh_per_1000)}/1k samples{estimated}"
        color = BADGE_COLORS[rating.rating]
    label = "energy"
    # Roughly 6.5 px per character at 11 px Verdana, as shields-style badges do.
    label_w, value_w = 10 + int(6.5 * len(label)), 10 + int(6.5 * len(value))
    svg = render_to_string(
        "audit/badge.svg",
        {"label": label, "value": value, "color": color, "label_w": label_w, "value_w": value_w,
         "width": label_w + value_w, "label_x": label_w / 2, "value_x": label_w + value_w / 2,
         "title": f"{version}: energy rating {value}"},
    )
    response = HttpResponse(svg, content_type="image/svg+xml")
    response["Cache-Control"] = "public, max-age=300" if team.publish_badges else "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response
