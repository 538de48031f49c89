-- Capabilities (issue 16): the destinations the egress proxy refused an
-- execution's box, as a JSON array; NULL when there were none.
ALTER TABLE executions ADD COLUMN egress_refused TEXT;
