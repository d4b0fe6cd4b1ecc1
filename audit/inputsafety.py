"""Text no field may hold (NUL, lone UTF-16 surrogates) and JSON no parser should walk (nested
deeper than ``MAX_JSON_DEPTH``).

PostgreSQL refuses NUL in text and JSON ("A string literal cannot contain NUL"), and a lone
surrogate (a JSON ``"\\ud800"``) cannot be encoded at all; either would surface as a 500 from
deep inside a query. JSON nested a thousand deep makes ``json.loads`` (and every recursive walk
after it) raise RecursionError, another 500. ``InvalidCharactersMiddleware`` answers 400 before
any view runs when the path, the query string, a header (the token, the session cookie), a form
field or file name, or a JSON body holds one of these; ``loads_checked`` does the same checks
for JSON that arrives as text inside a form field (a model's ``input_spec``, an
``architecture_config``).
"""
import json
import re

from django.http import HttpResponseBadRequest, JsonResponse

INVALID = re.compile("[\x00\ud800-\udfff]")
MESSAGE = "Null characters and unpaired surrogates are not allowed."
# Real requests nest a few levels (an input_spec's input_overrides); 32 leaves room and stays
# far below Python's recursion limit and PostgreSQL's jsonb depth.
MAX_JSON_DEPTH = 32
DEPTH_MESSAGE = f"JSON nested deeper than {MAX_JSON_DEPTH} levels is not accepted."
NON_FIELD = "non_field_errors"
JSON_TYPES = ("application/json",)


class UnsafeJSON(ValueError):
    """JSON text that parses, or would, into something no field may hold."""


def _children(value) -> list:
    """(key or None, child) pairs of a container, in document order; [] for a scalar."""
    if isinstance(value, dict):
        return list(value.items())
    if isinstance(value, (list, tuple)):
        return [(None, item) for item in value]
    return []


def find_problem(value, where: str = "") -> tuple[str, str] | None:
    """(field name, message) for the first place in ``value`` (str, list, dict, nested) that
    holds an invalid character or lies deeper than MAX_JSON_DEPTH containers, or None.

    Walks with an explicit stack: any depth is safe to inspect."""
    stack = [(value, where, 1)]
    while stack:
        item, name, depth = stack.pop()
        if isinstance(item, str):
            if INVALID.search(item):
                return name or NON_FIELD, MESSAGE
            continue
        if isinstance(item, (dict, list, tuple)) and depth > MAX_JSON_DEPTH:
            return name or NON_FIELD, DEPTH_MESSAGE
        for key, child in reversed(_children(item)):
            if isinstance(key, str) and INVALID.search(key):
                return NON_FIELD, MESSAGE
            stack.append((child, name or ("" if key is None else str(key)), depth + 1))
    return None


def find_invalid(value, where: str = "") -> str | None:
    """The name of the first place in ``value`` holding an invalid character (or nested too
    deep), or None."""
    problem = find_problem(value, where)
    return problem[0] if problem else None


def loads_checked(text: str | bytes):
    """``json.loads`` for JSON text from a form field: raises json.JSONDecodeError for text that
    is not JSON, UnsafeJSON (with a message to show) for JSON nested too deep or holding NUL or
    a lone surrogate."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise UnsafeJSON(DEPTH_MESSAGE) from None
    problem = find_problem(value)
    if problem:
        raise UnsafeJSON(problem[1])
    return value


def _query_and_form(querydict) -> dict:
    return {key: querydict.getlist(key) for key in querydict}


class InvalidCharactersMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        problem = self.find_request_problem(request)
        if problem:
            field, message = problem
            if request.path.startswith("/api/"):
                return JsonResponse({field: [message]}, status=400)
            return HttpResponseBadRequest(f"{message} ({field})", content_type="text/plain; charset=utf-8")
        return self.get_response(request)

    @staticmethod
    def find_request_problem(request) -> tuple[str, str] | None:
        if INVALID.search(request.path_info) or INVALID.search(request.path):
            return NON_FIELD, MESSAGE
        headers = {k: v for k, v in request.META.items() if k.startswith("HTTP_") and isinstance(v, str)}
        if find_invalid(headers) or find_invalid(request.COOKIES):  # cookies may arrive octal-escaped
            return NON_FIELD, MESSAGE
        found = find_problem(_query_and_form(request.GET))
        if found or request.method not in ("POST", "PUT", "PATCH", "DELETE"):
            return found
        content_type = (request.content_type or "").lower()
        if content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
            found = find_problem(_query_and_form(request.POST))
            if found:
                return found
            for key in request.FILES:
                for uploaded in request.FILES.getlist(key):
                    if INVALID.search(uploaded.name or ""):
                        return key, MESSAGE
            return None
        if content_type in JSON_TYPES or content_type.endswith("+json"):
            try:
                data = json.loads(request.body or b"null")
            except RecursionError:
                return NON_FIELD, DEPTH_MESSAGE
            except (ValueError, UnicodeDecodeError):
                return None  # not JSON: the parser answers 400 itself
            return find_problem(data)
        return None
