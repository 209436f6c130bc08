-- The BFF's own state, in a schema the API does not expose and only the BFF's login reaches:
-- sign-in sessions (shared by every BFF instance, so any instance can use or revoke a session)
-- and the state of OAuth flows under way.

CREATE SCHEMA IF NOT EXISTS dana_bff;
REVOKE ALL ON SCHEMA dana_bff FROM PUBLIC;
GRANT USAGE ON SCHEMA dana_bff TO dana_bff;

-- One row per browser session. The cookie holds a random value; only its SHA-256 is stored. The
-- user's tokens are sealed with the BFF's session key (XChaCha20-Poly1305, bound to the row), so
-- a copy of this table opens nothing.
CREATE TABLE dana_bff.sessions (
  id_hash bytea PRIMARY KEY CHECK (length(id_hash) = 32),
  user_id uuid NOT NULL,
  sealed_tokens bytea NOT NULL,
  access_expires_at timestamptz NOT NULL,
  -- The session ends here unless refreshed (each refresh moves it on).
  expires_at timestamptz NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  refreshed_at timestamptz,
  revoked_at timestamptz
);
CREATE INDEX sessions_user_id_idx ON dana_bff.sessions (user_id);
CREATE INDEX sessions_expires_at_idx ON dana_bff.sessions (expires_at);

-- OAuth flows: sign-in through Supabase Auth (bound to the browser by a cookie) and integration
-- installs (bound to the session that started them). Single-use, short-lived; the PKCE verifier
-- is sealed like the tokens.
CREATE TABLE dana_bff.oauth_states (
  state_hash bytea PRIMARY KEY CHECK (length(state_hash) = 32),
  purpose text NOT NULL CHECK (purpose IN ('login', 'integration')),
  provider text NOT NULL,
  session_hash bytea,
  user_id uuid,
  sealed_verifier bytea NOT NULL,
  return_to text NOT NULL CHECK (return_to LIKE '/%' AND return_to NOT LIKE '//%'),
  -- Fields the install passes on to the stored config (a Zendesk subdomain, a GA property).
  extra jsonb NOT NULL DEFAULT '{}',
  expires_at timestamptz NOT NULL,
  used_at timestamptz,
  CHECK (purpose = 'login' OR (session_hash IS NOT NULL AND user_id IS NOT NULL))
);
CREATE INDEX oauth_states_expires_at_idx ON dana_bff.oauth_states (expires_at);

GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA dana_bff TO dana_bff;
