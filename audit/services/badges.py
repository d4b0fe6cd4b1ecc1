"""The energy badge: an SVG with a model version's rating, and the public link of an audit's
badge (issue 22).

The team's own pages link the badge at /badges/<version>.svg, which answers only members (or
anyone, where the team publishes its badges). To embed a badge elsewhere (a README, a model
card), a lead issues the audit a public link, /badges/a/<token>.svg, whose token is random
(``secrets.token_urlsafe``, 32 bytes) and stored on the audit; revoking clears it and the old
link answers 404; issuing again gives a new token.

What a badge says comes from ``Rating.label`` (audit/reports/ratings.py), the same words as the
report page: a rating in its colour only when its class holds enough audits and the audit's
evidence is conclusive, otherwise grey ("not rated: 1 of 5", "3/5 (grade D, inconclusive)").
"""
from __future__ import annotations

import secrets

from django.core.exceptions import PermissionDenied, ValidationError
from django.template.loader import render_to_string

from ..models import Audit, Membership
from ..reports import formatting as units
from ..reports.ratings import Rating, hardware_class, rating_for_version

TOKEN_BYTES = 32
BADGE_COLORS = {1: "#b42318", 2: "#dc6803", 3: "#b98900", 4: "#4c8c16", 5: "#0b6e4f"}
GREY = "#5b6475"


def is_lead(user, audit: Audit) -> bool:
    return bool(user and user.is_authenticated) and Membership.objects.filter(
        user=user, team_id=audit.model_version.asset.team_id, role=Membership.Role.LEAD).exists()


def issue_badge_link(user, audit: Audit) -> str:
    """A new public token for the audit's badge (the previous link, if any, stops working). Leads only."""
    if not is_lead(user, audit):
        raise PermissionDenied("Only a lead of the audit's team can issue its public badge link.")
    if audit.status != Audit.Status.SUCCEEDED:
        raise ValidationError("Only a succeeded audit has a badge.")
    audit.badge_token = secrets.token_urlsafe(TOKEN_BYTES)
    audit.save(update_fields=["badge_token"])
    return audit.badge_token


def revoke_badge_link(user, audit: Audit) -> None:
    if not is_lead(user, audit):
        raise PermissionDenied("Only a lead of the audit's team can revoke its public badge link.")
    audit.badge_token = None
    audit.save(update_fields=["badge_token"])


def audit_by_badge_token(token: str) -> Audit | None:
    if not token or len(token) > 64:
        return None
    return (Audit.objects.select_related("model_version__asset")
            .filter(badge_token=token, status=Audit.Status.SUCCEEDED).first())


def audit_rating(audit: Audit) -> Rating | None:
    """The rating of the audit's model version on the audit's hardware class."""
    return rating_for_version(audit.model_version_id, task=audit.model_version.asset.task,
                              hw=hardware_class(audit.fingerprint, audit.device))


def badge_value(rating: Rating | None) -> tuple[str, str]:
    """(text, colour) of a badge: the rating's colour only when it is shown (ranked, conclusive)."""
    if rating is None:
        return "unrated", GREY
    estimated = " est." if rating.estimated else ""
    figure = f"{units.wh(rating.wh_per_1000)}/1k samples{estimated}"
    color = BADGE_COLORS[rating.rating] if rating.shown else GREY
    return f"{rating.label} · {figure}", color


def badge_svg(rating: Rating | None, subject: str) -> str:
    value, color = badge_value(rating)
    label = "energy"
    # Roughly 6.5 px per character at 11 px Verdana, as shields-style badges do.
    label_w, value_w = 10 + int(6.5 * len(label)), 10 + int(6.5 * len(value))
    return render_to_string(
        "audit/badge.svg",
        {"label": label, "value": value, "color": color, "label_w": label_w, "value_w": value_w,
         "width": label_w + value_w, "label_x": label_w / 2, "value_x": label_w + value_w / 2,
         "title": f"{subject}: energy rating {value}"},
    )
