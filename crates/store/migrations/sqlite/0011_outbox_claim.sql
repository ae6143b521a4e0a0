-- The worker claims a channel's due messages, earliest due first: (status, channel,
-- next_attempt_at) hands them out in that order with no sort. The old (status,
-- next_attempt_at) index made each claim collect and sort every due message, so a burst of
-- 10,000 cost 10,000 sorts of thousands of rows.
DROP INDEX outbox_due;
CREATE INDEX outbox_claim ON outbox (status, channel, next_attempt_at);
