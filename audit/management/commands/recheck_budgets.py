"""Check every succeeded audit against its team's active budgets again, under the rule in
audit/services/budgets.py. Run once after upgrading: verdicts stored under an older rule
(e.g. a grade-D figure 38x over its limit stored as "inconclusive") stay until then, since
the check otherwise runs only when an audit succeeds or one of its team's budgets changes."""
from django.core.management.base import BaseCommand, CommandError

from audit.models import Team
from audit.services.budgets import team_budgets_recheck


class Command(BaseCommand):
    help = "Re-run the energy budget check on every succeeded audit (or one team's)."

    def add_arguments(self, parser):
        parser.add_argument("--team", help="slug of one team (default: every team)")

    def handle(self, *args, team=None, **options):
        teams = Team.objects.order_by("pk")
        if team:
            teams = teams.filter(slug=team)
            if not teams.exists():
                raise CommandError(f"No team with the slug “{team}”.")
        for t in teams:
            n = team_budgets_recheck(team=t)
            self.stdout.write(f"{t.slug}: {n} audit{'s' if n != 1 else ''} checked")
