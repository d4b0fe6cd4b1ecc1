"""Reviews: a team lead approves a succeeded audit or requests changes; anyone in the team
comments. Every decision and comment is kept (the history on the report); the audit's
review_status follows the latest decision, and its requester is emailed on each decision."""
import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import transaction

from workers.engine.quality import at_least

from ..models import Audit, Membership, Review

log = logging.getLogger(__name__)

DECISIONS = (Review.Decision.APPROVED, Review.Decision.CHANGES_REQUESTED)


def _role(user, audit: Audit) -> str | None:
    membership = (
        Membership.objects.filter(user=user, team_id=audit.model_version.asset.team_id).only("role").first()
        if user is not None and user.is_authenticated
        else None
    )
    return membership.role if membership else None


def review_allowed(*, user, audit: Audit, decision: str) -> bool:
    role = _role(user, audit)
    if role is None:
        return False
    return decision == Review.Decision.COMMENT or role == Membership.Role.LEAD


def _first_reason(audit: Audit, keep) -> str:
    for r in audit.budget_results or []:
        if keep(r) and r.get("reason"):  # results checked before reasons were stored have none
            return f" ({r['budget']}, {r['variant']}: {r['reason']})"
    return ""


def budget_warning(audit: Audit) -> str | None:
    """What the budgets say against an approval: a limit failed (its whole 95% interval lies
    beyond it), or the verdict is inconclusive (a limit lies inside an interval, or a
    measurement cannot carry a verdict). None when budgets pass or none applies."""
    if audit.budget_verdict == "fail":
        n = sum(1 for r in audit.budget_results or [] if r.get("passed") is False)
        first = _first_reason(audit, lambda r: r.get("passed") is False)
        return f"{n} budget limit{'s' if n != 1 else ''} failed{first}"
    if audit.budget_verdict == "inconclusive":
        return "its budget verdict is inconclusive" + _first_reason(audit, lambda r: r.get("inconclusive"))
    return None


def low_quality_warning(audit: Audit) -> str | None:
    """What a lead must acknowledge before approving: a failed or inconclusive budget, and a
    quality grade below C (the figures are imprecise or indirectly measured: verdicts rest on
    their intervals, the grade says how wide and how direct). None when there is nothing."""
    parts = []
    budgets = budget_warning(audit)
    if budgets:
        parts.append(budgets)
    if audit.quality_grade and not at_least(audit.quality_grade):
        reasons = "; ".join(audit.quality_reasons[:4]) if audit.quality_reasons else "no reason recorded"
        parts.append(f"its quality grade is {audit.quality_grade} ({reasons})")
    if not parts:
        return None
    return ("Before approving this audit, acknowledge that " + " and that ".join(parts)
            + ". Tick the acknowledgement to approve it anyway.")


@transaction.atomic
def review_create(*, user, audit: Audit, decision: str, comment: str = "",
                  acknowledge_low_quality: bool = False) -> Review:
    """Record a decision (leads only) or a comment (any member of the audit's team).

    Raises PermissionDenied for a member who tries to decide (or someone outside the
    team) and ValidationError for a decision on an audit that has not succeeded, or a
    comment or change request without text, and for an approval of an audit whose budgets
    failed or are inconclusive, or graded below C, without ``acknowledge_low_quality``."""
    comment = (comment or "").strip()
    if decision not in Review.Decision.values:
        raise ValidationError({"decision": f"Choose one of: {', '.join(Review.Decision.values)}."})
    if not review_allowed(user=user, audit=audit, decision=decision):
        if _role(user, audit) is None:
            raise PermissionDenied("You are not in this audit's team.")
        raise PermissionDenied("Only a team lead can approve an audit or request changes.")
    if decision in DECISIONS:
        audit = Audit.objects.select_for_update(of=("self",)).select_related("model_version__asset").get(pk=audit.pk)
        if audit.status != Audit.Status.SUCCEEDED:
            raise ValidationError("Only a succeeded audit can be reviewed.", code="not_reviewable")
        if decision == Review.Decision.CHANGES_REQUESTED and not comment:
            raise ValidationError({"comment": "Say what should change."})
        warning = low_quality_warning(audit) if decision == Review.Decision.APPROVED else None
        if warning and not acknowledge_low_quality:
            raise ValidationError({"acknowledge_low_quality": warning}, code="low_quality")
    elif not comment:
        raise ValidationError({"comment": "A comment cannot be empty."})
    review = Review.objects.create(audit=audit, reviewer=user, decision=decision, comment=comment)
    if decision in DECISIONS:
        Audit.objects.filter(pk=audit.pk).update(review_status=decision)
        audit.review_status = decision
        transaction.on_commit(lambda: review_notify(review=review))
    return review


def review_notify(*, review: Review) -> bool:
    """Email the audit's requester about a lead's decision. A mail failure is logged, never
    raised: the decision is recorded either way."""
    audit = review.audit
    requester = audit.requested_by
    if requester is None or not requester.email:
        # Said where an operator looks: otherwise a decision nobody hears of looks like a lost email.
        log.warning("Review %s of audit #%s: no email sent, %s", review.pk, audit.pk,
                    "the audit has no requester (a deleted user)" if requester is None
                    else f"its requester {requester.get_username()} has no email address")
        return False
    verdict = {"approved": "approved", "changes-requested": "changes requested"}[review.decision]
    reviewer = review.reviewer.get_username() if review.reviewer else "a team lead"
    url = settings.SITE_URL.rstrip("/") + audit.get_absolute_url()
    lines = [
        f"{reviewer} reviewed audit #{audit.pk} of {audit.model_version}: {verdict}.",
        "",
    ]
    if review.comment:
        lines += [review.comment, ""]
    if audit.budget_verdict:
        lines += [f"Energy budgets: {audit.budget_verdict}."]
        undecided = [r for r in audit.budget_results or [] if r.get("passed") is False or r.get("inconclusive")]
        lines += [f"- {r['budget']}, {r['variant']}: {r['reason']}" for r in undecided[:5] if r.get("reason")]
        lines.append("")
    lines.append(f"Report: {url}")
    try:
        send_mail(
            subject=f"[Energy Audit] Audit #{audit.pk} of {audit.model_version}: {verdict}",
            message="\n".join(lines),
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=[requester.email],
        )
    except Exception:  # noqa: BLE001 - SMTP down must not lose the decision
        log.exception("Could not email %s about review %s", requester.email, review.pk)
        return False
    return True


# --- reads (kept here with the workflow they serve; selectors.py is shared and frozen now) ---


def teams_led_by(user):
    from ..models import Team

    if not user.is_authenticated:
        return Team.objects.none()
    return Team.objects.filter(memberships__user=user, memberships__role=Membership.Role.LEAD).order_by("name")


def review_queue_for_user(user):
    """Audits awaiting review in the teams the user leads, oldest first."""
    from ..selectors import audits_for_user

    return (
        audits_for_user(user)
        .filter(review_status=Audit.ReviewStatus.PENDING, model_version__asset__team__in=teams_led_by(user))
        .order_by("finished_at", "created_at", "id")
    )


def is_lead(user, team) -> bool:
    return teams_led_by(user).filter(pk=team.pk).exists()
