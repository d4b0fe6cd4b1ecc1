"""Text no field may hold: NUL and lone UTF-16 surrogates.

PostgreSQL refuses NUL in text and JSON ("A string literal cannot contain NUL"), and a lone
surrogate (a JSON ``"\\ud800"``) cannot be encoded at all; either would surface as a 500 from
deep inside a query. ``InvalidCharactersMiddleware`` answers 400 before any view runs when the
path, the query string, a header (the token, the session cookie), a form field or file name,
or any string in a JSON body holds one.
"""
import json
import re

from django.http import HttpResponseBadRequest, JsonResponse

INVALID = re.compile("[\x00\ud800-\udfff]")
MESSAGE = "Null characters and unpaired surrogates are not allowed."
JSON_TYPES = ("application/json",)


def find_invalid(value, where: str = "") -> str | None:
    """The name of the first place in ``value`` (str, list, dict, nested) holding an invalid
    character, or None."""
    if isinstance(value, str):
        return (where or "non_field_errors") if INVALID.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            name = where or str(key)
            if isinstance(key, str) and INVALID.search(key):
                return "non_field_errors"
            found = find_invalid(item, name)
            if found:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for item in value:
            found = find_invalid(item, where)
            if found:
                return found
    return None


def _query_and_form(querydict) -> dict:
    return {key: querydict.getlist(key) for key in querydict}


class InvalidCharactersMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        field = self.invalid_field(request)
        if field:
            if request.path.startswith("/api/"):
                return JsonResponse({field: [MESSAGE]}, status=400)
            return HttpResponseBadRequest(f"{MESSAGE} ({field})", content_type="text/plain; charset=utf-8")
        return self.get_response(request)

    @staticmethod
    def invalid_field(request) -> str | None:
        if INVALID.search(request.path_info) or INVALID.search(request.path):
            return "non_field_errors"
        headers = {k: v for k, v in request.META.items() if k.startswith("HTTP_") and isinstance(v, str)}
        if find_invalid(headers) or find_invalid(request.COOKIES):  # cookies may arrive octal-escaped
            return "non_field_errors"
        found = find_invalid(_query_and_form(request.GET))
        if found:
            return found
        if request.method not in ("POST", "PUT", "PATCH", "DELETE"):
            return None
        content_type = (request.content_type or "").lower()
        if content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
            found = find_invalid(_query_and_form(request.POST))
            if found:
                return found
            for key in request.FILES:
                for uploaded in request.FILES.getlist(key):
                    if INVALID.search(uploaded.name or ""):
                        return key
            return None
        if content_type in JSON_TYPES or content_type.endswith("+json"):
            try:
                data = json.loads(request.body or b"null")
            except (ValueError, UnicodeDecodeError):
                return None  # not JSON: the parser answers 400 itself
            return find_invalid(data)
        return None
