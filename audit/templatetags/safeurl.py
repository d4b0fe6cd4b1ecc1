"""``http_url``: a URL from stored data, fit for an href only when it is http(s).

A result comes from the engine child, which runs the uploaded model: any URL in it (the carbon
source's, for one) is the attacker's choice. ``javascript:``, ``data:``, ``vbscript:`` and
every other scheme, and anything that is not an absolute web address, renders as no link at
all. Registered as a template builtin (audit/settings.py), so every template has it:
``{% with url=audit.carbon.source_url|http_url %}{% if url %}<a href="{{ url }}">…``
"""
from urllib.parse import urlsplit

from django import template

register = template.Library()
WEB_SCHEMES = ("http", "https")


@register.filter
def http_url(value) -> str:
    """The URL re-serialized as parsed, when its scheme is http or https and it names a host;
    "" otherwise. urlsplit drops tabs and newlines and leading blanks as browsers do, so
    "java\\nscript:" is read as the browser would read it."""
    if not isinstance(value, str) or not value.strip():
        return ""
    try:
        parts = urlsplit(value.strip())
    except ValueError:  # a malformed IPv6 host, for one
        return ""
    if parts.scheme.lower() not in WEB_SCHEMES or not parts.hostname:
        return ""
    return parts.geturl()
