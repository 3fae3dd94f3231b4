"""PII redaction, applied to every event before it is logged, queued or stored.

Three layers, so that a caller's mistake does not leak:
1. properties the registry declares personal (email, ip, phone, name, free text, url);
2. properties whose *name* says they are personal (`email`, `first_name`, `ip_address`, `body`,
   ...), whether or not the event declares them;
3. e-mail addresses, IP addresses and phone numbers found *inside* any other string value.

Each hit is masked (default), hashed (salted SHA-256, so funnels can still join on it) or
dropped, per the policy. URLs keep scheme, host and path; query and fragment (where tokens and
addresses hide) are removed.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from analytics_pipeline.errors import ConfigurationError
from analytics_pipeline.tracking.events import PiiClass

Strategy = Literal["mask", "hash", "drop"]
STRATEGIES: tuple[Strategy, ...] = ("mask", "hash", "drop")

_EMAIL = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"
_IPV4 = r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)(?![\d.])"
# IPv6 candidates (hex groups and at least two colons, '::' allowed) are confirmed by the
# ipaddress module, so a time of day such as 10:15:00 is left alone.
_IPV6 = r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:.])"
# International numbers with a leading +, or North American 3-3-4 groupings. Deliberately not
# "any long digit run": ids, amounts and dates must survive.
_PHONE = r"(?<![\w+])(?:\+\d[\d ().-]{6,}\d|\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4})(?!\w)"
_SCAN = re.compile(f"(?P<email>{_EMAIL})|(?P<ip>{_IPV4})|(?P<ip6>{_IPV6})|(?P<phone>{_PHONE})")
# Cheap pre-test: a string with no '@', ':', '+', '(', no digit-dot-digit and no run of 7
# digits holds none of them.
_MAYBE = re.compile(r"[@:+(]|\d\.\d|\d(?:\D?\d){6}")

_NONE: Mapping[str, PiiClass | None] = {}

DEFAULT_KEYS: dict[str, PiiClass] = {
    **dict.fromkeys(("email", "email_address", "recipient", "from_email", "to_email"), "email"),
    **dict.fromkeys(("ip", "ip_address", "client_ip", "remote_addr", "$ip"), "ip"),
    **dict.fromkeys(("phone", "phone_number", "mobile", "telephone"), "phone"),
    **dict.fromkeys(
        ("name", "first_name", "last_name", "full_name", "display_name", "contact_name"), "name"
    ),
    **dict.fromkeys(
        ("body", "message", "text", "notes", "note", "comment", "subject", "content", "reply"),
        "free_text",
    ),
    **dict.fromkeys(("url", "href", "link", "$current_url", "referrer"), "url"),
}


@dataclass(frozen=True)
class RedactionPolicy:
    """How personal data is handled before an event leaves the process.

    strategy: "mask" replaces a value with "[redacted:<class>]", "hash" with a salted SHA-256
        prefix (stable, joinable, not reversible without the salt), "drop" removes the property.
    keys: property names always treated as personal, with their class (defaults: DEFAULT_KEYS).
    allow: property names never redacted (an explicit exception, e.g. a public company name).
    scan_values: also find e-mail/IP/phone patterns inside every other string value.
    salt: the hash strategy's salt; set one per deployment.
    """

    strategy: Strategy = "mask"
    # Left out of the hash (a dict is not hashable); equality still compares it.
    keys: Mapping[str, PiiClass] = field(default_factory=lambda: dict(DEFAULT_KEYS), hash=False)
    allow: frozenset[str] = frozenset()
    scan_values: bool = True
    salt: str = ""

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigurationError(
                f"redaction strategy {self.strategy!r} is not one of {', '.join(STRATEGIES)}"
            )

    def properties(
        self, props: Mapping[str, object], declared: Mapping[str, PiiClass | None]
    ) -> dict[str, object]:
        """A redacted copy of `props`; `declared` maps property names to their registry class.

        Nested mappings get the same rules (declared names included); keys are scanned too.
        """
        out: dict[str, object] = {}
        for key, value in props.items():
            if key in self.allow:
                out[key] = value
                continue
            pii = declared.get(key) or self.keys.get(key.lower())
            if _MAYBE.search(key):
                key = _SCAN.sub(self._substitute, key)  # an address used as a key
            if pii is None:
                out[key] = self._scan(value, declared)
            elif value is None:
                out[key] = None
            elif self.strategy != "drop" or pii == "url":
                out[key] = self._replace(pii, value)
        return out

    def groups(self, groups: Mapping[str, object]) -> dict[str, str]:
        """Group keys (PostHog group types) as given; their values scanned like any text."""
        return {k: str(self._scan(str(v), {})) for k, v in groups.items()}

    def distinct_id(self, value: str) -> str:
        """Person ids stay stable (funnels need them) but an e-mail or phone used as one is
        always hashed, whatever the strategy: masking would merge every person into one."""
        if _MAYBE.search(value) and _SCAN.sub(self._substitute, value) != value:
            return "sha256:" + self._digest(value)
        return value

    def _replace(self, pii: PiiClass, value: object) -> object:
        if pii == "url" and isinstance(value, str):
            return self._scan(_strip_url(value))
        if self.strategy == "hash":
            return "sha256:" + self._digest(str(value))
        return f"[redacted:{pii}]"

    def _digest(self, value: str) -> str:
        return hashlib.sha256((self.salt + value.strip().lower()).encode()).hexdigest()[:16]

    def _scan(self, value: object, declared: Mapping[str, PiiClass | None] = _NONE) -> object:
        if isinstance(value, str):
            if self.scan_values and _MAYBE.search(value):
                return _SCAN.sub(self._substitute, value)
            return value
        if isinstance(value, Mapping):
            return self.properties(value, declared)
        if isinstance(value, (list, tuple)):
            return [self._scan(v, declared) for v in value]
        if value is None or isinstance(value, (bool, int, float)):
            return value
        # Anything else (a date, a Decimal, an object) goes out as its text, scanned like text:
        # the SDK would otherwise stringify or drop it later, out of the caller's sight.
        return self._scan(str(value))

    def _substitute(self, match: re.Match[str]) -> str:
        pii: PiiClass = match.lastgroup  # type: ignore[assignment]
        if match.lastgroup == "ip6":
            try:
                ipaddress.IPv6Address(match.group())
            except ValueError:
                return match.group()
            pii = "ip"
        if self.strategy == "hash":
            return "sha256:" + self._digest(match.group())
        return f"[redacted:{pii}]"


def _strip_url(value: str) -> str:
    try:
        parts = urlsplit(value)
    except ValueError:
        return "[redacted:url]"
    if not parts.scheme or not parts.netloc:
        return "[redacted:url]"
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
