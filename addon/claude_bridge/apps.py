"""Which app sent a request: the label its spend is counted under in the ledger and its budget is kept by.

A named access key says it best (`bridge_app_keys`: APP=KEY, one key per app, so apps sharing the bridge are told
apart even when they use the same SDK); without one, the product in the client's User-Agent (`OpenAI/Python 1.54.0`
-> `OpenAI/Python`, `curl/8.5.0` -> `curl`). A User-Agent is the client's own claim: it labels, it does not prove.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from . import access

UNKNOWN = "unknown"
MAX_LABEL = 48
# Letters, digits and the punctuation product tokens use; anything else (spaces, quotes, '=', control characters,
# other scripts) could break the log line, the usage table or an `APP=USD` budget entry.
_LABEL_CHARACTER = re.compile(r"[A-Za-z0-9._/+\-@:]")
_VERSION = re.compile(r"v?\d[\w.+\-]*", re.IGNORECASE)


def app_of(headers: Mapping[str, str], app_keys: Mapping[str, str]) -> str:
    """The app a request is counted under: the name of the key it carries, else its User-Agent product."""
    named = access.app_of_key(headers.get("authorization"), app_keys)
    if named is not None:
        return named
    claimed = product(headers.get("user-agent"))
    # A User-Agent is the client's own word: it may not take the name (and so the budget) of an app with a key.
    return f"{claimed} (User-Agent)" if claimed in app_keys else claimed


def product(user_agent: str | None) -> str:
    """The User-Agent's first product without its version, kept short and printable; "unknown" when there is none."""
    first = next(iter((user_agent or "").split(maxsplit=1)), "")
    parts = first.split("/")
    while len(parts) > 1 and _VERSION.fullmatch(parts[-1]):
        parts.pop()  # curl/8.5.0 -> curl; ai-sdk/openai/1.2 -> ai-sdk/openai; OpenAI/Python stays whole
    label = "".join(c for c in "/".join(parts) if _LABEL_CHARACTER.fullmatch(c))[:MAX_LABEL].strip("/")
    return label or UNKNOWN


def parse_app_keys(entries: Sequence[str]) -> Mapping[str, str]:
    """`bridge_app_keys` entries `APP=KEY` as {app: key}; ValueError names the entry that is wrong, never the key.

    Cached: admission reads the option on every request, and the entries rarely change.
    """
    return _parse_app_keys(tuple(entries))


@functools.lru_cache(maxsize=8)
def _parse_app_keys(entries: tuple[str, ...]) -> Mapping[str, str]:
    keys: dict[str, str] = {}
    for number, entry in enumerate(entries, 1):
        app, equals, key = entry.partition("=")
        app, key = app.strip(), key.strip()
        where = f"bridge_app_keys entry {number}" + (f" ({app})" if app else "")
        if not equals or not app or not key:
            raise ValueError(f"{where} must be APP=KEY, with an app name and its key.")
        if product(app) != app or "/" in app:
            raise ValueError(f"{where}: an app name is letters, digits and . _ + - @ : only, at most {MAX_LABEL} long.")
        if app in keys:
            raise ValueError(f"{where}: {app} has a key already; give each app one key.")
        if key in keys.values():
            raise ValueError(f"{where}: that key is another app's too; give each app a key of its own.")
        keys[app] = key
    return MappingProxyType(keys)  # shared by every caller of the cache: read-only
