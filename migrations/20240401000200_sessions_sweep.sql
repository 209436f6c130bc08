-- Sessions revoked more than a day ago are deleted as new ones start (bff/src/session.rs): an
-- index so that sweep does not read the whole table.
CREATE INDEX sessions_revoked_at_idx ON dana_bff.sessions (revoked_at) WHERE revoked_at IS NOT NULL;
