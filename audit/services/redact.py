"""Texts from the engine and the worker (stage messages, errors, warnings) name files by their
path under STORAGE_ROOT, which is the server's business: what is stored for a page, the API or
the export names the file (the upload's name) instead."""
import os
import re

from django.conf import settings

# A path goes on until whitespace, a quote or a bracket (as it is written in messages and reprs).
_END = r"[\s'\"()\[\]{}<>,;]"
_PATH_TAIL = r"(?:/[^\s'\"()\[\]{}<>,;]*)?"


def _roots() -> list[str]:
    root = str(settings.STORAGE_ROOT).rstrip("/")
    roots = {root, os.path.realpath(root)} - {"", "/"}
    return sorted(roots, key=len, reverse=True)  # the longer first: a symlinked root inside another


def _name(match: re.Match) -> str:
    tail = match.group(0)[len(match.group("root")):]
    path = tail.rstrip("/.:")  # a sentence's colon or full stop after the path stays
    return (os.path.basename(path) or "the stored file") + tail[len(path):].lstrip("/")


def hide_storage_paths(text):
    """``text`` with each path under the storage root replaced by its last component:
    "loading /srv/var/storage/models/1/ab/abc…/gpt2-rand.zip" -> "loading gpt2-rand.zip"."""
    if not isinstance(text, str) or not text:
        return text
    for root in _roots():
        if root in text:
            text = re.sub(f"(?P<root>{re.escape(root)})(?=/|:|{_END}|$){_PATH_TAIL}", _name, text)
    return text


def hide_storage_paths_in(value):
    """The same for every string in a JSON-like document (dicts, lists, strings)."""
    if isinstance(value, str):
        return hide_storage_paths(value)
    if isinstance(value, dict):
        return {k: hide_storage_paths_in(v) for k, v in value.items()}
    if isinstance(value, list):
        return [hide_storage_paths_in(v) for v in value]
    return value
