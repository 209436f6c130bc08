-- Dana's tables. Ownership is carried by a user_id column defaulting to the signed-in user;
-- child rows reference their parent through (parent_id, user_id), so a row can only hang under a
-- parent of the same user, whatever the policies say. Every foreign key has an index.
-- created_at / updated_at and their trigger are added by dana.track_timestamps() at the end.

-- Tenants and membership -----------------------------------------------------------------------
CREATE TABLE public.tenants (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  slug text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$')
);

CREATE TABLE public.tenant_members (
  tenant_id uuid NOT NULL REFERENCES public.tenants (id) ON DELETE CASCADE,
  user_id uuid NOT NULL REFERENCES auth.users (id) ON DELETE CASCADE,
  role text NOT NULL DEFAULT 'member' CHECK (role IN ('owner', 'admin', 'member')),
  PRIMARY KEY (tenant_id, user_id)
);
CREATE INDEX tenant_members_user_id_idx ON public.tenant_members (user_id);

-- Users -------------------------------------------------------------------------------------------
CREATE TABLE public.profiles (
  id uuid PRIMARY KEY DEFAULT dana.uid() REFERENCES auth.users (id) ON DELETE CASCADE,
  full_name text CHECK (length(full_name) <= 200),
  avatar_url text CHECK (avatar_url ~ '^https://'),
  bio text CHECK (length(bio) <= 2000)
);

CREATE TABLE public.user_settings (
  user_id uuid PRIMARY KEY DEFAULT dana.uid() REFERENCES auth.users (id) ON DELETE CASCADE,
  theme text NOT NULL DEFAULT 'system' CHECK (theme IN ('system', 'light', 'dark')),
  locale text NOT NULL DEFAULT 'en' CHECK (locale ~ '^[a-z]{2}(-[A-Z]{2})?$'),
  notifications jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(notifications) = 'object')
);

CREATE TABLE public.user_memory (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL DEFAULT dana.uid() REFERENCES auth.users (id) ON DELETE CASCADE,
  key text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
  value jsonb NOT NULL,
  importance smallint NOT NULL DEFAULT 0 CHECK (importance BETWEEN 0 AND 10),
  UNIQUE (user_id, key)
);

-- Plans ---------------------------------------------------------------------------------------------
CREATE TABLE public.subscription_tiers (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  slug text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9-]+$'),
  name text NOT NULL,
  price_cents integer NOT NULL CHECK (price_cents >= 0),
  currency text NOT NULL DEFAULT 'usd' CHECK (currency ~ '^[a-z]{3}$'),
  monthly_request_limit integer CHECK (monthly_request_limit > 0),
  features jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(features) = 'array'),
  sort_order integer NOT NULL DEFAULT 0,
  is_active boolean NOT NULL DEFAULT true
);

CREATE TABLE public.user_subscriptions (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL DEFAULT dana.uid() UNIQUE REFERENCES auth.users (id) ON DELETE CASCADE,
  tier_id uuid NOT NULL REFERENCES public.subscription_tiers (id),
  status text NOT NULL DEFAULT 'active' CHECK (status IN ('trialing', 'active', 'past_due', 'canceled')),
  current_period_end timestamptz
);
CREATE INDEX user_subscriptions_tier_id_idx ON public.user_subscriptions (tier_id);

CREATE TABLE public.api_usage (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id uuid NOT NULL DEFAULT dana.uid() REFERENCES auth.users (id) ON DELETE CASCADE,
  endpoint text NOT NULL,
  tokens_used integer NOT NULL DEFAULT 0 CHECK (tokens_used >= 0),
  cost_cents integer NOT NULL DEFAULT 0 CHECK (cost_cents >= 0),
  occurred_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_usage_user_id_occurred_at_idx ON public.api_usage (user_id, occurred_at);

-- Only a hash of each key is kept; the key itself is shown once, when it is created.
CREATE TABLE public.api_keys (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL DEFAULT dana.uid() REFERENCES auth.users (id) ON DELETE CASCADE,
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
  key_prefix text NOT NULL CHECK (key_prefix ~ '^[A-Za-z0-9_]{4,12}$'),
  key_hash text NOT NULL UNIQUE CHECK (key_hash ~ '^[0-9a-f]{64}$'),
  scopes text[] NOT NULL DEFAULT '{}',
  last_used_at timestamptz,
  expires_at timestamptz,
  revoked_at timestamptz
);

-- Organisation (per tenant) ----------------------------------------------------------------------
CREATE TABLE public.departments (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id uuid NOT NULL REFERENCES public.tenants (id) ON DELETE CASCADE,
  created_by uuid NOT NULL DEFAULT dana.uid() REFERENCES auth.users (id) ON DELETE CASCADE,
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  description text
);

CREATE TABLE public.organizational_roles (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id uuid NOT NULL REFERENCES public.tenants (id) ON DELETE CASCADE,
  created_by uuid NOT NULL DEFAULT dana.uid() REFERENCES auth.users (id) ON DELETE CASCADE,
  department_id uuid REFERENCES public.departments (id) ON DELETE SET NULL,
  title text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
  responsibilities text
);
CREATE INDEX organizational_roles_department_id_idx ON public.organizational_roles (department_id);

CREATE TABLE public.business_functions (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id uuid NOT NULL REFERENCES public.tenants (id) ON DELETE CASCADE,
  created_by uuid NOT NULL DEFAULT dana.uid() REFERENCES auth.users (id) ON DELETE CASCADE,
  department_id uuid REFERENCES public.departments (id) ON DELETE SET NULL,
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  description text
);
CREATE INDEX business_functions_department_id_idx ON public.business_functions (department_id);

-- Agents and tools --------------------------------------------------------------------------------
CREATE TABLE public.tools (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  slug text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9_]+$'),
  name text NOT NULL,
  description text,
  config_schema jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE public.agents (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL DEFAULT dana.uid() REFERENCES auth.users (id) ON DELETE CASCADE,
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  description text,
  model text NOT NULL DEFAULT 'gpt-4o-mini',
  system_prompt text,
  temperature numeric(3, 2) NOT NULL DEFAULT 0.7 CHECK (temperature BETWEEN 0 AND 2),
  is_active boolean NOT NULL DEFAULT true,
  UNIQUE (id, user_id)
);

CREATE TABLE public.agent_tools (
  agent_id uuid NOT NULL,
  tool_id uuid NOT NULL REFERENCES public.tools (id) ON DELETE CASCADE,
  user_id uuid NOT NULL DEFAULT dana.uid(),
  enabled boolean NOT NULL DEFAULT true,
  config jsonb NOT NULL DEFAULT '{}',
  PRIMARY KEY (agent_id, tool_id),
  FOREIGN KEY (agent_id, user_id) REFERENCES public.agents (id, user_id) ON DELETE CASCADE
);
CREATE INDEX agent_tools_tool_id_idx ON public.agent_tools (tool_id);
CREATE INDEX agent_tools_agent_id_user_id_idx ON public.agent_tools (agent_id, user_id);

CREATE TABLE public.tasks (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL DEFAULT dana.uid() REFERENCES auth.users (id) ON DELETE CASCADE,
  agent_id uuid,
  title text NOT NULL CHECK (length(title) BETWEEN 1 AND 500),
  description text,
  status text NOT NULL DEFAULT 'todo' CHECK (status IN ('todo', 'in_progress', 'done', 'canceled')),
  priority smallint NOT NULL DEFAULT 3 CHECK (priority BETWEEN 1 AND 5),
  due_at timestamptz,
  FOREIGN KEY (agent_id, user_id) REFERENCES public.agents (id, user_id) ON DELETE SET NULL (agent_id)
);
CREATE INDEX tasks_agent_id_user_id_idx ON public.tasks (agent_id, user_id);

-- Conversations -------------------------------------------------------------------------------------
CREATE TABLE public.conversations (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL DEFAULT dana.uid() REFERENCES auth.users (id) ON DELETE CASCADE,
  agent_id uuid,
  title text NOT NULL DEFAULT 'New conversation' CHECK (length(title) <= 500),
  archived boolean NOT NULL DEFAULT false,
  UNIQUE (id, user_id),
  FOREIGN KEY (agent_id, user_id) REFERENCES public.agents (id, user_id) ON DELETE SET NULL (agent_id)
);
CREATE INDEX conversations_agent_id_user_id_idx ON public.conversations (agent_id, user_id);

CREATE TABLE public.messages (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  conversation_id uuid NOT NULL,
  user_id uuid NOT NULL DEFAULT dana.uid(),
  role text NOT NULL CHECK (role IN ('user', 'assistant', 'system', 'tool')),
  content text NOT NULL,
  metadata jsonb NOT NULL DEFAULT '{}',
  FOREIGN KEY (conversation_id, user_id) REFERENCES public.conversations (id, user_id) ON DELETE CASCADE
);
CREATE INDEX messages_conversation_id_user_id_idx ON public.messages (conversation_id, user_id);

-- Knowledge -------------------------------------------------------------------------------------------
CREATE TABLE public.knowledge_files (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL DEFAULT dana.uid() REFERENCES auth.users (id) ON DELETE CASCADE,
  file_name text NOT NULL CHECK (length(file_name) BETWEEN 1 AND 255 AND file_name !~ '[/\\[:cntrl:]]'),
  content_type text NOT NULL DEFAULT 'application/octet-stream',
  size_bytes bigint CHECK (size_bytes >= 0),
  sha256 text CHECK (sha256 ~ '^[0-9a-f]{64}$'),
  storage_bucket text NOT NULL DEFAULT 'knowledge-files',
  storage_path text,
  status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'stored', 'failed', 'legacy')),
  -- The old design kept file bodies here, base64-encoded; the backfill moves them to storage.
  content_base64 text,
  CHECK (status <> 'stored' OR storage_path IS NOT NULL),
  UNIQUE (id, user_id)
);

CREATE TABLE public.documents (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL DEFAULT dana.uid() REFERENCES auth.users (id) ON DELETE CASCADE,
  knowledge_file_id uuid,
  title text NOT NULL CHECK (length(title) BETWEEN 1 AND 500),
  content text,
  metadata jsonb NOT NULL DEFAULT '{}',
  UNIQUE (id, user_id),
  FOREIGN KEY (knowledge_file_id, user_id) REFERENCES public.knowledge_files (id, user_id) ON DELETE SET NULL (knowledge_file_id)
);
CREATE INDEX documents_knowledge_file_id_user_id_idx ON public.documents (knowledge_file_id, user_id);

CREATE TABLE public.document_chunks (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  document_id uuid NOT NULL,
  user_id uuid NOT NULL DEFAULT dana.uid(),
  chunk_index integer NOT NULL CHECK (chunk_index >= 0),
  content text NOT NULL,
  token_count integer CHECK (token_count >= 0),
  UNIQUE (document_id, chunk_index),
  FOREIGN KEY (document_id, user_id) REFERENCES public.documents (id, user_id) ON DELETE CASCADE
);
CREATE INDEX document_chunks_document_id_user_id_idx ON public.document_chunks (document_id, user_id);
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector') THEN
    ALTER TABLE public.document_chunks ADD COLUMN embedding extensions.vector(1536);
    CREATE INDEX document_chunks_embedding_idx ON public.document_chunks
      USING hnsw (embedding extensions.vector_cosine_ops);
  ELSE
    ALTER TABLE public.document_chunks ADD COLUMN embedding real[];
  END IF;
END $$;

CREATE TABLE public.document_conversation_links (
  document_id uuid NOT NULL,
  conversation_id uuid NOT NULL,
  user_id uuid NOT NULL DEFAULT dana.uid(),
  PRIMARY KEY (document_id, conversation_id),
  FOREIGN KEY (document_id, user_id) REFERENCES public.documents (id, user_id) ON DELETE CASCADE,
  FOREIGN KEY (conversation_id, user_id) REFERENCES public.conversations (id, user_id) ON DELETE CASCADE
);
CREATE INDEX document_conversation_links_document_id_user_id_idx ON public.document_conversation_links (document_id, user_id);
CREATE INDEX document_conversation_links_conversation_id_user_id_idx ON public.document_conversation_links (conversation_id, user_id);

-- Integrations ----------------------------------------------------------------------------------------
-- Written by users with secrets in clear inside config; dana.integration_configs_guard() validates,
-- moves the secrets into `secrets` (encrypted, bound to this row) and leaves masks in config.
CREATE TABLE public.integration_configs (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id uuid NOT NULL DEFAULT dana.uid() REFERENCES auth.users (id) ON DELETE CASCADE,
  integration_type text NOT NULL,
  config jsonb NOT NULL DEFAULT '{}',
  secrets bytea,
  secrets_key_version integer,
  status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'active', 'error', 'disabled')),
  last_verified_at timestamptz,
  last_error text,
  UNIQUE (user_id, integration_type)
);
CREATE TRIGGER integration_configs_guard BEFORE INSERT OR UPDATE ON public.integration_configs
  FOR EACH ROW EXECUTE FUNCTION dana.integration_configs_guard();

-- The old design's table name: move its rows (through the guard, so secrets get encrypted) and
-- take the old table out of the API. Rows that fail validation are kept in dana_meta.
SELECT * FROM dana.migrate_legacy_integrations_config();

-- Timestamps on every table ----------------------------------------------------------------------------
SELECT dana.track_timestamps(c.oid)
  FROM pg_class c
 WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r';
