"""The client's address, as the deployment's own proxies saw it: one function for every
throttle (the bad-token throttle, DRF's throttles, django-axes' login lockout).

``AUDIT_TRUSTED_PROXY_COUNT`` says how many proxies of ours stand in front of Django. With 0
(the default: ``make run``, gunicorn reached directly) the address is the TCP peer,
``REMOTE_ADDR``, and any ``X-Forwarded-For`` is the client's own words, ignored. With n, the
last n hops are ours: the nearest proxy is ``REMOTE_ADDR``, and each proxy appends the address
it saw to ``X-Forwarded-For`` (nginx: ``$proxy_add_x_forwarded_for``), so the client is the
n-th entry from the right. Entries further left were written by the client and are never
trusted: rotating them changes nothing, forging a victim's address locks out no one.
"""
import ipaddress

from django.conf import settings


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def client_ip(request) -> str:
    remote = request.META.get("REMOTE_ADDR", "")
    proxies = settings.AUDIT_TRUSTED_PROXY_COUNT
    if proxies <= 0:
        return remote
    hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    if not hops:
        return remote  # not through our proxies (a health check on the container itself)
    # fewer hops than proxies: the leftmost was still written by one of ours
    candidate = hops[-min(proxies, len(hops))]
    # a proxy of ours writes an address; anything else is not from the chain we trust
    return candidate if _is_ip(candidate) else remote
