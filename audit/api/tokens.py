"""API tokens (rest_framework.authtoken: one token per user), created and revoked from the
user's account page. Creating a token replaces the previous one."""
from django.db import transaction
from rest_framework.authtoken.models import Token


@transaction.atomic
def api_token_create(*, user) -> Token:
    """A fresh token for the user; the previous one (if any) stops working at once."""
    Token.objects.filter(user=user).delete()
    return Token.objects.create(user=user)


@transaction.atomic
def api_token_revoke(*, user) -> bool:
    deleted, _ = Token.objects.filter(user=user).delete()
    return deleted > 0
