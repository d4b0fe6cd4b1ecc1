"""drf-spectacular post-processing: every operation documents the error answers it can give.

The views' own annotations name their success codes and any specific ones (409 on cancel);
these apply across the API and come from layers below the views: input validation and the
NUL/surrogate check (400), authentication (401), permissions and CSRF (403), scoping and
pagination (404), token throttling (429), and the upload size check on multipart bodies (413).
A bounded schemathesis run (tests/security/test_schemathesis.py) holds the API to them.
"""
ERROR_COMPONENT = "ErrorResponse"
ERROR_SCHEMA = {
    "type": "object",
    "description": "`detail` (a message) for most errors; for 400, the fields in error, each with its messages.",
    "properties": {"detail": {"type": "string"}},
    "additionalProperties": True,
}
COMMON = {
    "400": "Invalid input: the fields in error with their messages (a NUL or unpaired surrogate anywhere in the "
           "request included).",
    "401": "No valid credentials.",
    "403": "Not allowed: a lead's action asked by a member, or a session-authenticated write without its CSRF token.",
    "404": "Does not exist, belongs to another team, or a page past the end.",
    "429": "Too many failed token attempts from this client; `Retry-After` says when to try again.",
}
TOO_LARGE = "The request's Content-Length is over the upload limit; refused before the body is read."
METHODS = ("get", "post", "put", "patch", "delete")


def _error(description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}}}}


def add_error_responses(result, generator, request, public):
    for operations in (result.get("paths") or {}).values():
        for method, operation in operations.items():
            if method not in METHODS or not isinstance(operation, dict):
                continue
            responses = operation.setdefault("responses", {})
            for code, description in COMMON.items():
                responses.setdefault(code, _error(description))
            body = (operation.get("requestBody") or {}).get("content") or {}
            if "multipart/form-data" in body:
                responses.setdefault("413", _error(TOO_LARGE))
    result.setdefault("components", {}).setdefault("schemas", {})[ERROR_COMPONENT] = ERROR_SCHEMA
    return result
