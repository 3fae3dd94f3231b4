-- Rows the generator does not make (or not reliably) that pin down the contract's edges.
-- Dates are inside TEST_SIZE (2026-03-12 .. 2026-03-31).

-- A tenant with no activity at all: none of its partitions may have rows.
INSERT INTO tenants (id, name, status) VALUES ('quiet', 'Quiet Ltd', 'active');

-- A mailbox whose daily limit is 0: limit_utilization must be NULL, not an error.
INSERT INTO mailboxes (id, tenant_id, email_address, provider, daily_limit)
VALUES ('edge-mbx-zero', 'tenant-001', 'zero@edge.example', 'smtp', 0);
INSERT INTO emails (tenant_id, campaign_id, mailbox_id, status, sent_at, opened, bounce_type)
VALUES ('tenant-001', NULL, 'edge-mbx-zero', 'bounced', '2026-03-20 23:59:59.999999+00', NULL, 'hard'),
       -- exactly at midnight: belongs to the 21st
       ('tenant-001', NULL, 'edge-mbx-zero', 'delivered', '2026-03-21 00:00:00+00',
        '2026-03-28 10:00:00+00', NULL);

-- Warmup: a mailbox-day whose placements are all still unknown: inbox_rate NULL.
INSERT INTO warmup_emails (tenant_id, mailbox_id, sent_at, landed_in)
VALUES ('tenant-001', 'edge-mbx-zero', '2026-03-22 08:00:00+00', NULL),
       ('tenant-001', 'edge-mbx-zero', '2026-03-22 09:00:00+00', NULL);

-- A lead whose milestones fall on four different days, and one in no campaign.
INSERT INTO leads (id, tenant_id, campaign_id, email, status, created_at, first_contacted_at,
                   first_replied_at, converted_at, unsubscribed_at)
VALUES ('edge-lead-1', 'tenant-002', NULL, 'edge1@prospect.example', 'converted',
        '2026-03-13 00:00:00+00', '2026-03-14 12:00:00+00', '2026-03-16 23:59:59+00',
        '2026-03-20 00:00:00+00', NULL),
       ('edge-lead-2', 'tenant-002', NULL, 'edge2@prospect.example', 'unsubscribed',
        '2026-03-13 05:00:00+00', '2026-03-13 06:00:00+00', NULL, NULL,
        '2026-03-31 23:59:59.999999+00');

-- Billing in a second currency for tenant-001: issued, paid, partly refunded; a void invoice
-- (not issued, but its payment still counts as paid per the contract); a zero-amount invoice.
INSERT INTO subscriptions (id, tenant_id, plan, seats, mrr_cents, currency, status, started_at,
                           canceled_at)
VALUES ('edge-sub-jpy', 'tenant-001', 'pro', 3, 150000, 'JPY', 'canceled',
        '2026-03-15 00:00:00+00', '2026-03-25 00:00:00+00'),   -- active at the end of 15..24
       ('edge-sub-late', 'tenant-003', 'starter', 1, 900, 'EUR', 'active',
        '2026-03-30 00:00:00+00', NULL);                       -- started at the end of the 29th
INSERT INTO invoices (id, tenant_id, subscription_id, currency, amount_cents, status, issued_at,
                      paid_at, amount_refunded_cents, refunded_at)
VALUES ('edge-inv-1', 'tenant-001', 'edge-sub-jpy', 'JPY', 150000, 'paid',
        '2026-03-15 00:00:00+00', '2026-03-16 10:00:00+00', 50000, '2026-03-18 00:00:00+00'),
       ('edge-inv-void', 'tenant-001', 'edge-sub-jpy', 'JPY', 7000, 'void',
        '2026-03-17 00:00:00+00', '2026-03-17 01:00:00+00', 0, NULL),
       ('edge-inv-zero', 'tenant-001', 'edge-sub-jpy', 'JPY', 0, 'open',
        '2026-03-19 12:00:00+00', NULL, 0, NULL),
       ('edge-inv-draft', 'tenant-001', 'edge-sub-jpy', 'JPY', 999, 'draft', NULL, NULL, 0, NULL);

-- Admin actions exactly at midnight, and one recorded two days after it occurred.
INSERT INTO admin_actions (tenant_id, actor_id, actor_role, action, target_type, target_id,
                           ip_address, details, occurred_at, recorded_at)
VALUES ('tenant-003', 'edge-admin', 'owner', 'user.remove', 'user', 'u-1', '2001:db8::1',
        '{"reason": "left", "n": [1, 2]}', '2026-03-24 00:00:00+00', '2026-03-24 00:00:01+00'),
       ('tenant-003', 'edge-admin', 'owner', 'export.leads', NULL, NULL, NULL, '{}',
        '2026-03-23 23:59:59.999999+00', '2026-03-25 09:00:00+00');
