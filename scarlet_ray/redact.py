"""One redaction for everything written or logged: manifests, errors files, log records, errors.

Credentials reach this program in three ways: inside URLs (``https://user:pw@host``,
``?api-key=...``), as the values of environment variables (``OPENAI_API_KEY`` or whatever
``synthesis.api_key_env`` names), and echoed back by servers in error bodies. ``redact`` removes
all three from a string; ``redact_obj`` does it for a JSON-like tree and also blanks values kept
under secret-looking keys. Every writer of outputs calls these, so there is one rule to audit.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

MASK = "***"
# values shorter than this are never searched for as plain text: "1", "true" or a short user
# name would otherwise be masked in every message
MIN_ENV_SECRET = 8
MIN_LITERAL_SECRET = 6

# `scheme://userinfo@`: greedy up to the last "@" of the authority, so "p@ss" stays inside
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/?#\s\"'<>\\]+)@")
# credential-like query parameters: the name is one of these words, alone or as the last part
# after a separator (client_secret, x-amz-signature, refresh_token); "monkey" or "zipcode" are not.
# A value's last character is no sentence punctuation ("...?key=abc: refused" keeps its colon)
_PARAM_WORDS = (r"api[-_.]?key|apikey|key|token|access[-_.]?token|auth|authorization|sig|"
                r"signature|password|passwd|pwd|secret|code|credential|credentials|session")
_PARAM = re.compile(
    rf"(?P<lead>[?&;](?:[A-Za-z0-9.\-]*[-_.])?(?:{_PARAM_WORDS})=)"
    r"(?P<value>[^&#\s\"'<>\\]*[^&#\s\"'<>\\:,.;)\]])",
    re.IGNORECASE)
# an Authorization header value quoted back by a server or a library: after "Bearer", after
# "Authorization:", or after "Basic" when it looks like base64 (a digit or "=" in it), so prose
# such as "Basic configuration" stays
_AUTH_HEADER = re.compile(
    r"(?P<lead>\bBearer\s+|\bBasic\s+(?=[A-Za-z0-9+/]*[0-9=])"
    r"|\b(?i:authorization)[\"']?\s*[:=]\s*[\"']?)"
    r"(?P<value>[A-Za-z0-9\-._~+/=]{7,}[A-Za-z0-9\-_~+/=])")
# OpenAI-style keys typed somewhere they were not expected (a config value, a message)
_OPENAI_KEY = re.compile(r"\bsk-[A-Za-z0-9_\-]{16,}")

# environment variables whose value is a secret, by name
_SECRET_ENV_NAME = re.compile(
    r"(?:^|_)(?:API_?KEY|ACCESS_KEY|PRIVATE_KEY|SECRET_KEY|TOKEN|SECRET|PASSWORD|PASSWD|"
    r"CREDENTIALS?)$|PASSWORD", re.IGNORECASE)
# mapping keys whose string values are secrets; `*_env` keys hold variable names and stay
_SECRET_KEY_WORDS = frozenset({"apikey", "password", "passwd", "secret", "token", "credential",
                               "credentials", "authorization", "auth", "signature"})

_lock = threading.Lock()
_env_names: set[str] = {"OPENAI_API_KEY"}
_literals: set[str] = set()


def register_secret_env(name: str) -> None:
    """Mask the value of environment variable ``name`` (read when redacting, so a later export
    counts too); the config calls this for ``synthesis.api_key_env``."""
    if name:
        with _lock:
            _env_names.add(name)


def register_secret(value: str | None) -> None:
    """Mask this exact text wherever it appears (a password taken from a configured URL)."""
    # a value with "*" could be re-formed next to a mask, so redact would not be idempotent
    if value and len(value) >= MIN_LITERAL_SECRET and "*" not in value:
        with _lock:
            _literals.add(value)


def register_url_secrets(url: str | None) -> None:
    """Register the userinfo and credential-parameter values of a configured URL, so a server
    that echoes only the bare password has it masked as well."""
    if not url:
        return
    try:
        parts = urlsplit(url)
        user, password = parts.username, parts.password
        query = parse_qsl(parts.query, keep_blank_values=False)
    except ValueError:
        return
    register_secret(user)
    register_secret(password)
    for name, value in query:
        if _PARAM.search(f"?{name}=x"):
            register_secret(value)


def _is_secret_env_name(name: str) -> bool:
    return bool(_SECRET_ENV_NAME.search(name))


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Every text currently masked by value, longest first (so a longer secret that contains a
    shorter one is masked whole)."""
    env = os.environ if environ is None else environ
    with _lock:
        names = set(_env_names)
        found = set(_literals)
    for name, value in env.items():
        if (name in names or _is_secret_env_name(name)) and len(value) >= MIN_ENV_SECRET \
                and "*" not in value:
            found.add(value)
    variants = set(found)
    for v in found:  # the same secret as it appears inside a URL
        q = quote(v, safe="")
        if q != v:
            variants.add(q)
    return sorted(variants, key=len, reverse=True)


def redact(text: str, _values: list[str] | None = None) -> str:
    """``text`` with URL credentials, known secret values and echoed keys replaced by ``***``.

    Idempotent, and never longer in any secret: it only replaces spans by the mask.
    """
    if not isinstance(text, str) or not text:
        return text
    for value in secret_values() if _values is None else _values:
        if value in text:
            text = text.replace(value, MASK)
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    text = _PARAM.sub(lambda m: f"{m['lead']}{MASK}", text)
    text = _AUTH_HEADER.sub(lambda m: f"{m['lead']}{MASK}", text)
    return _OPENAI_KEY.sub(f"sk-{MASK}", text)


def _secret_key(key: Any) -> bool:
    name = str(key)
    if name.lower().endswith("_env"):
        return False
    words = [w for w in re.split(r"[^a-z0-9]+", re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower())
             if w]
    if any(w in _SECRET_KEY_WORDS for w in words):
        return True
    # api_key, access_key, secret_key: "key" after another word ("key" alone is often an id)
    return len(words) > 1 and words[-1] == "key"


def redact_obj(obj: Any) -> Any:
    """A copy of a JSON-like tree with every string redacted and every string under a
    secret-looking key (``api_key``, ``password``, ``token``; not ``*_env``) replaced by the mask.
    """
    return _redact_tree(obj, secret_values())


def _redact_tree(obj: Any, values: list[str]) -> Any:
    if isinstance(obj, str):
        return redact(obj, values)
    if isinstance(obj, Mapping):
        return {redact(k, values) if isinstance(k, str) else k:
                (MASK if isinstance(v, str) and v and _secret_key(k) else _redact_tree(v, values))
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = [_redact_tree(v, values) for v in obj]
        return items if isinstance(obj, list) else type(obj)(items)
    return obj


class RedactingFilter(logging.Filter):
    """Rewrites a record's message (and traceback text) redacted before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string is logging's to report
            return True
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_FILTER = RedactingFilter()


def install_log_redaction(handlers: Iterable[logging.Handler] | None = None) -> None:
    """Put the redacting filter on the root logger's handlers (idempotent). The CLI calls this
    right after configuring logging, so every record any module logs is redacted on output."""
    for h in list(handlers if handlers is not None else logging.getLogger().handlers):
        if _FILTER not in h.filters:
            h.addFilter(_FILTER)
