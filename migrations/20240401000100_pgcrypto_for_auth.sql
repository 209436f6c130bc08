-- pgcrypto in schema extensions, as on Supabase: auth.users keeps bcrypt password hashes
-- (`extensions.crypt`), which the local stack's Supabase Auth fake checks and the seed writes.
CREATE EXTENSION IF NOT EXISTS pgcrypto WITH SCHEMA extensions;
