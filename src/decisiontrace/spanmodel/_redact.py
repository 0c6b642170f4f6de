"""Secret scrubbing for everything the tracker writes onto spans.

Redaction happens once, where values are encoded for span attributes, so spans,
exports, the live view and every store see the same redacted values. It is on by
default. The common case (nothing secret-looking) costs one regular-expression scan of
the encoded JSON; only a hit pays for decoding, walking and re-encoding the value.

What is redacted:
- the value of any key that looks sensitive (password, secret, token, api key,
  authorization, cookie, session id, private key, credential...), whatever its type;
- substrings that look like credentials anywhere in text: ``Bearer ...`` headers,
  ``password=...`` pairs, OpenAI/Anthropic/GitHub/Slack/AWS-style keys, JWTs, PEM
  private keys;
- plus the user's key and value patterns, and a callback that sees every string.

If redaction itself fails, the value is dropped (replaced by a marker), never sent in
clear.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic_core import from_json, to_json

from decisiontrace._internal.errors import warn_once

logger = logging.getLogger("decisiontrace")

REDACTED = "[REDACTED]"
#: What replaces a value whose redaction failed.
DROPPED = '{"_decisiontrace_redacted":"redaction failed; value dropped"}'

DEFAULT_KEY_PATTERNS: tuple[str, ...] = (
    r"pass(word|wd|phrase)?",
    r"pwd",
    r"secret",
    r"token",
    r"api[-_]?key",
    r"access[-_]?key",
    r"private[-_]?key",
    r"auth(orization)?",
    r"credentials?",
    r"cookies?",
    r"set[-_]cookie",
    r"session[-_]?(id|key|token)?",
    r"x[-_]api[-_]key",
    r"client[-_]secret",
    r"signature",
)
DEFAULT_VALUE_PATTERNS: tuple[str, ...] = (
    r"(?i:\bbearer\s+[a-z0-9\-._~+/]{8,}=*)",
    r"(?i:\bbasic\s+[a-z0-9+/]{8,}=*)",
    r"(?i:\b(password|passwd|pwd|secret|token|api[-_]?key)\s*[=:]\s*[^\s,;&\"'\\]+)",
    r"\bsk-(ant-)?[A-Za-z0-9_\-]{16,}",
    r"\bgh[pousr]_[A-Za-z0-9]{30,}",
    r"\bgithub_pat_[A-Za-z0-9_]{30,}",
    r"\bxox[abprs]-[A-Za-z0-9\-]{10,}",
    r"\bAKIA[0-9A-Z]{16}\b",
    r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|$)",
)

Callback = Callable[[str, str], str]

#: Lower-case fragments at least one of which every default pattern's match contains.
#: Scanning for these literals is linear; the exact patterns run only on a hit.
_DEFAULT_MARKERS: tuple[str, ...] = (
    "pass",
    "pwd",
    "secret",
    "token",
    "key",
    "auth",
    "credential",
    "cookie",
    "session",
    "signature",
    "bearer",
    "basic",
    "sk-",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat",
    "xox",
    "akia",
    "eyj",
    "-----begin",
)
#: Texts found clean are remembered (agents encode the same option lists and contexts
#: over and over), up to this many characters in all.
_CLEAN_CACHE_CHARS = 256 * 1024


@dataclass
class Redactor:
    """The redaction rules in force.

    Args:
        enabled: False turns redaction off entirely.
        key_patterns: regular expressions; a dict key matching one (anywhere in the
            key, case-insensitive) has its value replaced, whatever its type.
        value_patterns: regular expressions; matching substrings of any string are
            replaced.
        callback: ``callback(path, text) -> text`` for every string value (path like
            ``"options[0].action_params.query"``); it may return a redacted text.
    """

    enabled: bool = True
    key_patterns: tuple[str, ...] = DEFAULT_KEY_PATTERNS
    value_patterns: tuple[str, ...] = DEFAULT_VALUE_PATTERNS
    callback: Callback | None = None
    _key: re.Pattern[str] = field(init=False, repr=False)
    _value: re.Pattern[str] = field(init=False, repr=False)
    _extra: re.Pattern[str] | None = field(init=False, repr=False, default=None)
    _clean: dict[str, None] = field(init=False, repr=False, default_factory=dict)
    _clean_chars: int = field(init=False, repr=False, default=0)

    def __post_init__(self) -> None:
        try:
            self._key = re.compile("|".join(f"(?:{p})" for p in self.key_patterns), re.I)
            self._value = re.compile("|".join(f"(?:{p})" for p in self.value_patterns))
        except re.error as error:
            raise ValueError(f"invalid redaction pattern: {error}") from error
        if self.callback is not None and not callable(self.callback):
            raise ValueError("callback must be callable(path, text) -> text")
        # Patterns beyond the defaults have no known literal markers: they are searched
        # as they are (key patterns anywhere in the text, a superset of key positions).
        extra = [p for p in self.key_patterns if p not in DEFAULT_KEY_PATTERNS]
        extra += [p for p in self.value_patterns if p not in DEFAULT_VALUE_PATTERNS]
        if extra:
            self._extra = re.compile("|".join(f"(?:{p})" for p in extra), re.I)

    def _may_hold_secrets(self, text: str) -> bool:
        """False when no pattern can match ``text`` (cheap; may say True wrongly)."""
        lowered = text.lower()
        for marker in _DEFAULT_MARKERS:
            if marker in lowered:
                return True
        return self._extra is not None and self._extra.search(text) is not None

    def _remember_clean(self, text: str) -> None:
        if self._clean_chars + len(text) > _CLEAN_CACHE_CHARS:
            self._clean.clear()
            self._clean_chars = 0
        self._clean[text] = None
        self._clean_chars += len(text)

    def json_text(self, text: str) -> str:
        """Redact encoded JSON text; returns it unchanged when nothing matches."""
        if not self.enabled:
            return text
        try:
            if self.callback is None:
                if text in self._clean:
                    return text
                if not self._may_hold_secrets(text):
                    self._remember_clean(text)
                    return text
            return to_json(self._walk(from_json(text), "")).decode()
        except Exception:  # expected: a redaction callback failed; fails closed, logged once
            _log_failure()
            return DROPPED

    def text(self, value: str) -> str:
        """Redact a plain text field (error, summary, problem description...)."""
        if not self.enabled:
            return value
        try:
            if self.callback is None and value in self._clean:
                return value
            redacted = value
            if self._may_hold_secrets(value):
                redacted = self._value.sub(REDACTED, value)
            elif self.callback is None:
                self._remember_clean(value)
            if self.callback is not None:
                redacted = self.callback("", redacted)
            return redacted
        except Exception:  # expected: a redaction callback failed; fails closed, logged once
            _log_failure()
            return REDACTED

    def _walk(self, value: Any, path: str) -> Any:
        if isinstance(value, dict):
            return {
                key: REDACTED if self._key.search(key) else self._walk(item, _join(path, key))
                for key, item in value.items()
            }
        if isinstance(value, list):
            return [self._walk(item, f"{path}[{index}]") for index, item in enumerate(value)]
        if isinstance(value, str):
            redacted = self._value.sub(REDACTED, value)
            if redacted and redacted[0] in "{[" and self._may_hold_secrets(redacted):
                redacted = self._nested_json(redacted, path)
            if self.callback is not None:
                redacted = self.callback(path, redacted)
            return redacted
        return value

    def _nested_json(self, text: str, path: str) -> str:
        """Strings that are themselves JSON documents get the same treatment."""
        try:
            inner = json.loads(text)
        except ValueError:
            return text
        return json.dumps(self._walk(inner, path), ensure_ascii=False, separators=(",", ":"))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _log_failure() -> None:
    warn_once(
        "redaction failed",
        "decisiontrace: redaction failed; the value was dropped",
        level=logging.ERROR,
        exc_info=True,
    )


_active = Redactor()


def configure_redaction(
    *,
    enabled: bool = True,
    extra_key_patterns: Iterable[str] = (),
    extra_value_patterns: Iterable[str] = (),
    callback: Callback | None = None,
    replace_defaults: bool = False,
) -> Redactor:
    """Set the redaction rules for everything recorded from now on.

    Args:
        enabled: False turns redaction off (not recommended).
        extra_key_patterns: regular expressions for more sensitive dict keys.
        extra_value_patterns: regular expressions for more secret-looking text.
        callback: ``callback(path, text) -> text``, called for every string value.
        replace_defaults: use only the given patterns, not the defaults.

    Returns:
        The rules now in force.

    Raises:
        ValueError: a pattern does not compile, or the callback is not callable.
    """
    global _active
    keys = tuple(extra_key_patterns)
    values = tuple(extra_value_patterns)
    if not replace_defaults:
        keys = DEFAULT_KEY_PATTERNS + keys
        values = DEFAULT_VALUE_PATTERNS + values
    _active = Redactor(
        enabled=enabled,
        key_patterns=keys or (r"(?!)",),
        value_patterns=values or (r"(?!)",),
        callback=callback,
    )
    return _active


def active() -> Redactor:
    """The rules in force."""
    return _active


def redact_json(text: str) -> str:
    """Redact encoded JSON text with the rules in force."""
    return _active.json_text(text)


def redact_text(value: str) -> str:
    """Redact a plain text with the rules in force."""
    rules = _active
    if value in rules._clean and rules.callback is None:  # seen clean: the common case
        return value
    return rules.text(value)
