"""Typed helpers for the product's email events (the first seed's trackEmailOpened and kin).

Each takes the ids by keyword, sends the event for `user_id` with the tenant as a PostHog group,
and leaves out ids that are not known. The signatures are the contract: a wrong or missing id is
a type error at the call site, not a malformed event in PostHog.
"""

from __future__ import annotations

from analytics_pipeline.tracking.facade import TrackingFacade


def _email_event(
    tracker: TrackingFacade,
    event: str,
    user_id: str,
    tenant_id: str,
    email_id: str,
    **optional: str | None,
) -> str | None:
    props = {"tenant_id": tenant_id, "email_id": email_id}
    props.update({k: v for k, v in optional.items() if v is not None})
    return tracker.track(user_id, event, props, groups={"tenant": tenant_id})


def track_email_sent(
    tracker: TrackingFacade,
    *,
    user_id: str,
    tenant_id: str,
    email_id: str,
    campaign_id: str | None = None,
    mailbox_id: str | None = None,
    lead_id: str | None = None,
    sequence_step_id: str | None = None,
) -> str | None:
    """email_sent: the email was dispatched to the provider."""
    return _email_event(
        tracker,
        "email_sent",
        user_id,
        tenant_id,
        email_id,
        campaign_id=campaign_id,
        mailbox_id=mailbox_id,
        lead_id=lead_id,
        sequence_step_id=sequence_step_id,
    )


def track_email_delivered(
    tracker: TrackingFacade,
    *,
    user_id: str,
    tenant_id: str,
    email_id: str,
    campaign_id: str | None = None,
    mailbox_id: str | None = None,
) -> str | None:
    """email_delivered: the provider confirmed delivery."""
    return _email_event(
        tracker,
        "email_delivered",
        user_id,
        tenant_id,
        email_id,
        campaign_id=campaign_id,
        mailbox_id=mailbox_id,
    )


def track_email_opened(
    tracker: TrackingFacade,
    *,
    user_id: str,
    tenant_id: str,
    email_id: str,
    campaign_id: str | None = None,
    mailbox_id: str | None = None,
) -> str | None:
    """email_opened: the recipient opened the email (tracking pixel)."""
    return _email_event(
        tracker,
        "email_opened",
        user_id,
        tenant_id,
        email_id,
        campaign_id=campaign_id,
        mailbox_id=mailbox_id,
    )


def track_email_clicked(
    tracker: TrackingFacade,
    *,
    user_id: str,
    tenant_id: str,
    email_id: str,
    campaign_id: str | None = None,
    mailbox_id: str | None = None,
    url: str | None = None,
) -> str | None:
    """email_clicked: the recipient clicked a link (query and fragment are stripped)."""
    return _email_event(
        tracker,
        "email_clicked",
        user_id,
        tenant_id,
        email_id,
        campaign_id=campaign_id,
        mailbox_id=mailbox_id,
        url=url,
    )


def track_email_bounced(
    tracker: TrackingFacade,
    *,
    user_id: str,
    tenant_id: str,
    email_id: str,
    campaign_id: str | None = None,
    mailbox_id: str | None = None,
    bounce_type: str | None = None,
) -> str | None:
    """email_bounced: the email bounced (bounce_type as the provider reported it)."""
    return _email_event(
        tracker,
        "email_bounced",
        user_id,
        tenant_id,
        email_id,
        campaign_id=campaign_id,
        mailbox_id=mailbox_id,
        bounce_type=bounce_type,
    )


def track_email_replied(
    tracker: TrackingFacade,
    *,
    user_id: str,
    tenant_id: str,
    email_id: str,
    campaign_id: str | None = None,
    mailbox_id: str | None = None,
) -> str | None:
    """email_replied: the recipient replied."""
    return _email_event(
        tracker,
        "email_replied",
        user_id,
        tenant_id,
        email_id,
        campaign_id=campaign_id,
        mailbox_id=mailbox_id,
    )
