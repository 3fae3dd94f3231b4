"""The event taxonomy: every event name the facade accepts, with the properties it expects.

Names follow the first seed's taxonomy (email_*, security_*, infra_*, business_*) plus the
facade seed's own events (announcement_published, payment_*). A property is declared once, in
PROPERTIES, with its type and its PII class; events list which of them they require or allow.
Adding an event is one `_event(...)` line below. Undeclared extra properties are allowed (they go
through the same redaction), so a new optional field never breaks a caller.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

# What a property may reveal about a person; drives redaction (see redaction.py).
PiiClass = Literal["email", "ip", "phone", "name", "free_text", "url"]


@dataclass(frozen=True)
class Property:
    name: str
    types: tuple[type, ...]
    pii: PiiClass | None = None

    def accepts(self, value: object) -> bool:
        if value is None:
            return False
        if numbers.Number in self.types:
            # bool is an int: a flag passed where a count is expected is a caller bug.
            return isinstance(value, numbers.Number) and not isinstance(value, bool)
        return isinstance(value, self.types)


_ID = (str, int)
_TEXT = (str,)
_NUM = (numbers.Number,)
_BOOL = (bool,)

PROPERTIES: dict[str, Property] = {
    p.name: p
    for p in [
        # Identifiers: opaque, never personal.
        Property("tenant_id", _ID),
        Property("campaign_id", _ID),
        Property("mailbox_id", _ID),
        Property("email_id", _ID),
        Property("lead_id", _ID),
        Property("sequence_step_id", _ID),
        Property("announcement_id", _ID),
        Property("invoice_id", _ID),
        Property("subscription_id", _ID),
        Property("run_id", _ID),
        Property("user_id", _ID),
        # Low-cardinality labels.
        Property("bounce_type", _TEXT),
        Property("method", _TEXT),
        Property("activity_type", _TEXT),
        Property("severity", _TEXT),
        Property("resource", _TEXT),
        Property("action", _TEXT),
        Property("plan", _TEXT),
        Property("from_plan", _TEXT),
        Property("to_plan", _TEXT),
        Property("currency", _TEXT),
        Property("provider", _TEXT),
        Property("audience", _TEXT),
        Property("component", _TEXT),
        Property("operation", _TEXT),
        Property("pool", _TEXT),
        Property("error_type", _TEXT),
        Property("job_name", _TEXT),
        Property("path", _TEXT),
        Property("status", _TEXT),
        # Measures.
        Property("amount_cents", _NUM),
        Property("duration_ms", _NUM),
        Property("rows", _NUM),
        Property("partitions", _NUM),
        Property("tenants", _NUM),
        Property("record_count", _NUM),
        Property("errors", _NUM),
        Property("attempts", _NUM),
        Property("size", _NUM),
        Property("checked_out", _NUM),
        Property("checked_in", _NUM),
        Property("overflow", _NUM),
        Property("success", _BOOL),
        # Personal or free text: redacted before anything leaves the process.
        Property("email", _TEXT, "email"),
        Property("ip", _TEXT, "ip"),
        Property("phone", _TEXT, "phone"),
        Property("name", _TEXT, "name"),
        Property("url", _TEXT, "url"),
        Property("reason", _TEXT, "free_text"),
        Property("detail", _TEXT, "free_text"),
        Property("message", _TEXT, "free_text"),
        Property("title", _TEXT, "free_text"),
    ]
}

Category = Literal["email", "security", "infra", "business", "product", "payment"]


@dataclass(frozen=True)
class EventSpec:
    name: str
    category: Category
    description: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()

    def declared(self, prop: str) -> Property | None:
        if prop in self.required or prop in self.optional:
            return PROPERTIES[prop]
        return None

    def mistyped(self, properties: Mapping[str, object]) -> list[str]:
        """Declared properties whose value has the wrong type."""
        return [
            key
            for key, value in properties.items()
            if value is not None
            and (spec := self.declared(key)) is not None
            and not spec.accepts(value)
        ]

    def violations(self, properties: Mapping[str, object]) -> list[str]:
        """What is wrong with these properties for this event; empty when they conform.

        Names properties and types, never values: this text is logged and sent.
        """
        problems = [
            f"missing required property {p!r}" for p in self.required if p not in properties
        ]
        problems += [
            f"required property {p!r} is None"
            for p in self.required
            if p in properties and properties[p] is None
        ]
        for key in self.mistyped(properties):
            wanted = " or ".join(t.__name__ for t in PROPERTIES[key].types)
            problems.append(f"property {key!r} is a {type(properties[key]).__name__}, not {wanted}")
        return problems


_EMAIL_IDS = ("tenant_id", "email_id")
_EMAIL_CONTEXT = ("campaign_id", "mailbox_id", "lead_id", "sequence_step_id")


def _event(
    name: str,
    category: Category,
    description: str,
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
) -> EventSpec:
    for prop in (*required, *optional):
        if prop not in PROPERTIES:
            raise AssertionError(f"event {name!r} uses undeclared property {prop!r}")
    return EventSpec(name, category, description, required, optional)


EVENTS: dict[str, EventSpec] = {
    e.name: e
    for e in [
        _event("email_sent", "email", "Email dispatched to provider", _EMAIL_IDS, _EMAIL_CONTEXT),
        _event("email_delivered", "email", "Confirmed delivery", _EMAIL_IDS, _EMAIL_CONTEXT),
        _event("email_opened", "email", "Recipient opened email", _EMAIL_IDS, _EMAIL_CONTEXT),
        _event(
            "email_clicked", "email", "Recipient clicked link", _EMAIL_IDS, (*_EMAIL_CONTEXT, "url")
        ),
        _event(
            "email_bounced",
            "email",
            "Email bounced",
            _EMAIL_IDS,
            (*_EMAIL_CONTEXT, "bounce_type", "reason"),
        ),
        _event("email_replied", "email", "Recipient replied", _EMAIL_IDS, _EMAIL_CONTEXT),
        _event(
            "security_login_succeeded",
            "security",
            "Login succeeded",
            ("method",),
            ("tenant_id", "ip"),
        ),
        _event(
            "security_login_failed",
            "security",
            "Login attempt failed",
            ("method",),
            ("tenant_id", "ip", "reason", "attempts"),
        ),
        _event(
            "security_suspicious_activity",
            "security",
            "Potential threat detected",
            ("activity_type",),
            ("tenant_id", "severity", "ip", "detail"),
        ),
        _event(
            "security_data_access",
            "security",
            "Sensitive data accessed",
            ("resource", "action"),
            ("tenant_id", "record_count"),
        ),
        _event(
            "infra_connection_pool_metrics",
            "infra",
            "Connection pool state",
            ("component", "pool", "size", "checked_out", "overflow"),
            ("checked_in", "tenant_id", "run_id"),
        ),
        _event(
            "infra_error_rate",
            "infra",
            "Application errors (one event per failure, errors = how many)",
            ("component", "errors"),
            ("error_type", "job_name", "run_id", "tenant_id", "message", "tenants", "partitions"),
        ),
        _event(
            "infra_latency",
            "infra",
            "How long an operation took and how much it did",
            ("component", "operation", "duration_ms"),
            ("rows", "partitions", "tenants", "tenant_id", "run_id", "path", "success"),
        ),
        _event("business_signup", "business", "New customer signup", ("tenant_id", "plan")),
        _event(
            "business_upgrade",
            "business",
            "Plan upgrade",
            ("tenant_id", "from_plan", "to_plan"),
        ),
        _event("business_churn", "business", "Customer churn", ("tenant_id",), ("plan", "reason")),
        _event(
            "announcement_published",
            "product",
            "An announcement was published",
            ("announcement_id",),
            ("tenant_id", "audience", "title"),
        ),
        _event(
            "payment_succeeded",
            "payment",
            "A payment was collected",
            ("tenant_id", "amount_cents", "currency"),
            ("invoice_id", "subscription_id", "provider"),
        ),
        _event(
            "payment_failed",
            "payment",
            "A payment attempt failed",
            ("tenant_id", "amount_cents", "currency"),
            ("invoice_id", "subscription_id", "provider", "reason", "attempts"),
        ),
        _event(
            "payment_refunded",
            "payment",
            "A payment was (partly) refunded",
            ("tenant_id", "amount_cents", "currency"),
            ("invoice_id", "provider", "reason"),
        ),
    ]
}
