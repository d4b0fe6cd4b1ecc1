from django.core.management.base import BaseCommand

from audit.demo import ensure_demo


class Command(BaseCommand):
    help = "Create the demo team, users, model, dataset and audit (idempotent)."

    def handle(self, *args, **options):
        ensure_demo(log=self.stdout.write)
