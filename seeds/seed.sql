-- Development seed: subscription tiers, two tenants, demo users (alice, a member of "Dana Demo";
-- bob, a member of "Other Co"; admin, the tenant admin of "Dana Demo"; olga, the owner of
-- "Other Co"; ops, a platform admin of no tenant), a row of every user-owned table for alice and
-- for bob, and knowledge_files rows that still hold base64 content, as the old design stored them.
-- Idempotent: every insert skips rows that exist.
BEGIN;

INSERT INTO auth.users (id, aud, role, email, email_confirmed_at, raw_app_meta_data, raw_user_meta_data) VALUES
  ('a11ce000-0000-4000-8000-000000000001', 'authenticated', 'authenticated', 'alice@demo.dana.dev', now(),
   '{"provider":"email","tenant_id":"10000000-0000-4000-8000-000000000001","role":"member"}', '{"full_name":"Alice Demo"}'),
  ('b0b00000-0000-4000-8000-000000000002', 'authenticated', 'authenticated', 'bob@other.dana.dev', now(),
   '{"provider":"email","tenant_id":"20000000-0000-4000-8000-000000000002","role":"member"}', '{"full_name":"Bob Other"}'),
  ('ad000000-0000-4000-8000-000000000003', 'authenticated', 'authenticated', 'admin@demo.dana.dev', now(),
   '{"provider":"email","tenant_id":"10000000-0000-4000-8000-000000000001","role":"admin"}', '{"full_name":"Ada Admin"}'),
  ('0190a000-0000-4000-8000-000000000004', 'authenticated', 'authenticated', 'olga@other.dana.dev', now(),
   '{"provider":"email","tenant_id":"20000000-0000-4000-8000-000000000002","role":"owner"}', '{"full_name":"Olga Owner"}'),
  ('0b500000-0000-4000-8000-000000000005', 'authenticated', 'authenticated', 'ops@dana.dev', now(),
   '{"provider":"email","platform_admin":true}', '{"full_name":"Platform Ops"}')
ON CONFLICT DO NOTHING;

INSERT INTO public.subscription_tiers (id, slug, name, price_cents, monthly_request_limit, features, sort_order) VALUES
  ('70000000-0000-4000-8000-000000000001', 'free', 'Free', 0, 1000, '["1 agent","community support"]', 1),
  ('70000000-0000-4000-8000-000000000002', 'pro', 'Pro', 2900, 50000, '["10 agents","integrations","email support"]', 2),
  ('70000000-0000-4000-8000-000000000003', 'business', 'Business', 9900, 500000, '["unlimited agents","SSO","priority support"]', 3)
ON CONFLICT DO NOTHING;

INSERT INTO public.tools (id, slug, name, description) VALUES
  ('71000000-0000-4000-8000-000000000001', 'web_search', 'Web search', 'Searches the web'),
  ('71000000-0000-4000-8000-000000000002', 'slack_post', 'Post to Slack', 'Posts a message to a Slack channel')
ON CONFLICT DO NOTHING;

INSERT INTO public.tenants (id, name, slug) VALUES
  ('10000000-0000-4000-8000-000000000001', 'Dana Demo', 'dana-demo'),
  ('20000000-0000-4000-8000-000000000002', 'Other Co', 'other-co')
ON CONFLICT DO NOTHING;

INSERT INTO public.tenant_members (tenant_id, user_id, role) VALUES
  ('10000000-0000-4000-8000-000000000001', 'a11ce000-0000-4000-8000-000000000001', 'member'),
  ('10000000-0000-4000-8000-000000000001', 'ad000000-0000-4000-8000-000000000003', 'admin'),
  ('20000000-0000-4000-8000-000000000002', 'b0b00000-0000-4000-8000-000000000002', 'member'),
  ('20000000-0000-4000-8000-000000000002', '0190a000-0000-4000-8000-000000000004', 'owner')
ON CONFLICT (tenant_id, user_id) DO UPDATE SET role = EXCLUDED.role;

-- Pending invitations: Olga invites Alice to Other Co, Ada invites Bob to Dana Demo.
INSERT INTO public.tenant_invitations (id, tenant_id, email, role, invited_by) VALUES
  ('7f000000-0000-4000-8000-00000000000a', '20000000-0000-4000-8000-000000000002', 'alice@demo.dana.dev', 'member', '0190a000-0000-4000-8000-000000000004'),
  ('7f000000-0000-4000-8000-00000000000b', '10000000-0000-4000-8000-000000000001', 'bob@other.dana.dev', 'member', 'ad000000-0000-4000-8000-000000000003')
ON CONFLICT DO NOTHING;

INSERT INTO public.profiles (id, full_name) VALUES
  ('a11ce000-0000-4000-8000-000000000001', 'Alice Demo'), ('b0b00000-0000-4000-8000-000000000002', 'Bob Other'), ('ad000000-0000-4000-8000-000000000003', 'Ada Admin'),
  ('0190a000-0000-4000-8000-000000000004', 'Olga Owner'), ('0b500000-0000-4000-8000-000000000005', 'Platform Ops')
ON CONFLICT DO NOTHING;

INSERT INTO public.user_settings (user_id, theme) VALUES ('a11ce000-0000-4000-8000-000000000001', 'dark'), ('b0b00000-0000-4000-8000-000000000002', 'light'), ('ad000000-0000-4000-8000-000000000003', 'system')
ON CONFLICT DO NOTHING;

INSERT INTO public.user_memory (id, user_id, key, value, importance) VALUES
  ('72000000-0000-4000-8000-00000000000a', 'a11ce000-0000-4000-8000-000000000001', 'preferred_channel', '"instagram"', 5),
  ('72000000-0000-4000-8000-00000000000b', 'b0b00000-0000-4000-8000-000000000002', 'preferred_channel', '"linkedin"', 4)
ON CONFLICT DO NOTHING;

INSERT INTO public.user_subscriptions (id, user_id, tier_id, status) VALUES
  ('73000000-0000-4000-8000-00000000000a', 'a11ce000-0000-4000-8000-000000000001', '70000000-0000-4000-8000-000000000002', 'active'),
  ('73000000-0000-4000-8000-00000000000b', 'b0b00000-0000-4000-8000-000000000002', '70000000-0000-4000-8000-000000000001', 'trialing')
ON CONFLICT DO NOTHING;

INSERT INTO public.api_usage (user_id, endpoint, tokens_used, cost_cents)
SELECT u, '/api/chat', 1200, 3 FROM unnest(ARRAY['a11ce000-0000-4000-8000-000000000001', 'b0b00000-0000-4000-8000-000000000002']::uuid[]) u
 WHERE NOT EXISTS (SELECT 1 FROM public.api_usage WHERE user_id = u);

INSERT INTO public.api_keys (id, user_id, name, key_prefix, key_hash) VALUES
  ('74000000-0000-4000-8000-00000000000a', 'a11ce000-0000-4000-8000-000000000001', 'CI key', 'dana_ak1', encode(sha256('demo-key-alice'), 'hex')),
  ('74000000-0000-4000-8000-00000000000b', 'b0b00000-0000-4000-8000-000000000002', 'Zapier', 'dana_bk1', encode(sha256('demo-key-bob'), 'hex'))
ON CONFLICT DO NOTHING;

INSERT INTO public.departments (id, tenant_id, created_by, name) VALUES
  ('75000000-0000-4000-8000-00000000000a', '10000000-0000-4000-8000-000000000001', 'a11ce000-0000-4000-8000-000000000001', 'Marketing'),
  ('75000000-0000-4000-8000-00000000000b', '20000000-0000-4000-8000-000000000002', 'b0b00000-0000-4000-8000-000000000002', 'Sales')
ON CONFLICT DO NOTHING;

INSERT INTO public.organizational_roles (id, tenant_id, created_by, department_id, title) VALUES
  ('76000000-0000-4000-8000-00000000000a', '10000000-0000-4000-8000-000000000001', 'a11ce000-0000-4000-8000-000000000001', '75000000-0000-4000-8000-00000000000a', 'Social media manager'),
  ('76000000-0000-4000-8000-00000000000b', '20000000-0000-4000-8000-000000000002', 'b0b00000-0000-4000-8000-000000000002', '75000000-0000-4000-8000-00000000000b', 'Account executive')
ON CONFLICT DO NOTHING;

INSERT INTO public.business_functions (id, tenant_id, created_by, department_id, name) VALUES
  ('77000000-0000-4000-8000-00000000000a', '10000000-0000-4000-8000-000000000001', 'a11ce000-0000-4000-8000-000000000001', '75000000-0000-4000-8000-00000000000a', 'Content calendar'),
  ('77000000-0000-4000-8000-00000000000b', '20000000-0000-4000-8000-000000000002', 'b0b00000-0000-4000-8000-000000000002', '75000000-0000-4000-8000-00000000000b', 'Lead qualification')
ON CONFLICT DO NOTHING;

INSERT INTO public.agents (id, user_id, name, system_prompt) VALUES
  ('78000000-0000-4000-8000-00000000000a', 'a11ce000-0000-4000-8000-000000000001', 'Instagram writer', 'You write Instagram captions.'),
  ('78000000-0000-4000-8000-00000000000b', 'b0b00000-0000-4000-8000-000000000002', 'LinkedIn writer', 'You write LinkedIn posts.')
ON CONFLICT DO NOTHING;

INSERT INTO public.agent_tools (agent_id, tool_id, user_id) VALUES
  ('78000000-0000-4000-8000-00000000000a', '71000000-0000-4000-8000-000000000002', 'a11ce000-0000-4000-8000-000000000001'),
  ('78000000-0000-4000-8000-00000000000b', '71000000-0000-4000-8000-000000000001', 'b0b00000-0000-4000-8000-000000000002')
ON CONFLICT DO NOTHING;

INSERT INTO public.tasks (id, user_id, agent_id, title) VALUES
  ('79000000-0000-4000-8000-00000000000a', 'a11ce000-0000-4000-8000-000000000001', '78000000-0000-4000-8000-00000000000a', 'Draft launch week posts'),
  ('79000000-0000-4000-8000-00000000000b', 'b0b00000-0000-4000-8000-000000000002', NULL, 'Follow up with Ada')
ON CONFLICT DO NOTHING;

INSERT INTO public.conversations (id, user_id, agent_id, title) VALUES
  ('7a000000-0000-4000-8000-00000000000a', 'a11ce000-0000-4000-8000-000000000001', '78000000-0000-4000-8000-00000000000a', 'Launch week ideas'),
  ('7a000000-0000-4000-8000-00000000000c', 'a11ce000-0000-4000-8000-000000000001', NULL, 'Hashtag research'),
  ('7a000000-0000-4000-8000-00000000000b', 'b0b00000-0000-4000-8000-000000000002', NULL, 'Q3 pipeline')
ON CONFLICT DO NOTHING;

INSERT INTO public.messages (id, conversation_id, user_id, role, content) VALUES
  ('7b000000-0000-4000-8000-0000000000a1', '7a000000-0000-4000-8000-00000000000a', 'a11ce000-0000-4000-8000-000000000001', 'user', 'Give me five launch post ideas'),
  ('7b000000-0000-4000-8000-0000000000a2', '7a000000-0000-4000-8000-00000000000a', 'a11ce000-0000-4000-8000-000000000001', 'assistant', '1. Behind the scenes ...'),
  ('7b000000-0000-4000-8000-0000000000a3', '7a000000-0000-4000-8000-00000000000c', 'a11ce000-0000-4000-8000-000000000001', 'user', 'Which hashtags trend for coffee shops?'),
  ('7b000000-0000-4000-8000-0000000000b1', '7a000000-0000-4000-8000-00000000000b', 'b0b00000-0000-4000-8000-000000000002', 'user', 'Summarise the Q3 pipeline'),
  ('7b000000-0000-4000-8000-0000000000b2', '7a000000-0000-4000-8000-00000000000b', 'b0b00000-0000-4000-8000-000000000002', 'assistant', 'Twelve open deals ...')
ON CONFLICT DO NOTHING;

INSERT INTO public.knowledge_files (id, user_id, file_name, content_type, size_bytes, sha256, status, content_base64) VALUES
  ('f1000000-0000-4000-8000-000000000001', 'a11ce000-0000-4000-8000-000000000001', 'welcome.md', 'text/markdown', 90, encode(sha256('# Welcome to Dana

This file was stored base64-encoded in the database by the old design.
'::bytea), 'hex'), 'legacy', 'IyBXZWxjb21lIHRvIERhbmEKClRoaXMgZmlsZSB3YXMgc3RvcmVkIGJhc2U2NC1lbmNvZGVkIGluIHRoZSBkYXRhYmFzZSBieSB0aGUgb2xkIGRlc2lnbi4K'),
  ('f1000000-0000-4000-8000-000000000002', 'a11ce000-0000-4000-8000-000000000001', 'brand voice (v2).txt', 'text/plain', 56, encode(sha256('Friendly, concise, no jargon. Emojis only on Instagram.
'::bytea), 'hex'), 'legacy', 'RnJpZW5kbHksIGNvbmNpc2UsIG5vIGphcmdvbi4gRW1vamlzIG9ubHkgb24gSW5zdGFncmFtLgo='),
  ('f2000000-0000-4000-8000-000000000003', 'b0b00000-0000-4000-8000-000000000002', 'leads.csv', 'text/csv', 55, encode(sha256('name,email
Ada,ada@example.com
Grace,grace@example.com
'::bytea), 'hex'), 'legacy', 'bmFtZSxlbWFpbApBZGEsYWRhQGV4YW1wbGUuY29tCkdyYWNlLGdyYWNlQGV4YW1wbGUuY29tCg==')
ON CONFLICT DO NOTHING;

INSERT INTO public.documents (id, user_id, knowledge_file_id, title, content) VALUES
  ('7c000000-0000-4000-8000-00000000000a', 'a11ce000-0000-4000-8000-000000000001', 'f1000000-0000-4000-8000-000000000001', 'Welcome to Dana', 'This file was stored base64-encoded ...'),
  ('7c000000-0000-4000-8000-00000000000b', 'b0b00000-0000-4000-8000-000000000002', 'f2000000-0000-4000-8000-000000000003', 'Leads', 'name,email ...')
ON CONFLICT DO NOTHING;

INSERT INTO public.document_chunks (id, document_id, user_id, chunk_index, content, token_count) VALUES
  ('7d000000-0000-4000-8000-00000000000a', '7c000000-0000-4000-8000-00000000000a', 'a11ce000-0000-4000-8000-000000000001', 0, 'This file was stored base64-encoded', 7),
  ('7d000000-0000-4000-8000-00000000000b', '7c000000-0000-4000-8000-00000000000b', 'b0b00000-0000-4000-8000-000000000002', 0, 'name,email', 3)
ON CONFLICT DO NOTHING;

INSERT INTO public.document_conversation_links (document_id, conversation_id, user_id) VALUES
  ('7c000000-0000-4000-8000-00000000000a', '7a000000-0000-4000-8000-00000000000a', 'a11ce000-0000-4000-8000-000000000001'),
  ('7c000000-0000-4000-8000-00000000000b', '7a000000-0000-4000-8000-00000000000b', 'b0b00000-0000-4000-8000-000000000002')
ON CONFLICT DO NOTHING;

-- Secrets go in clear; the guard trigger encrypts them (this needs dana.secret_keys).
INSERT INTO public.integration_configs (id, user_id, integration_type, config) VALUES
  ('7e000000-0000-4000-8000-00000000000a', 'a11ce000-0000-4000-8000-000000000001', 'slack',
   '{"bot_token":"xoxb-0000000000-demo-alice-token","channel_id":"C0DEMO0001","team_name":"Dana Demo"}'),
  ('7e000000-0000-4000-8000-0000000000a2', 'a11ce000-0000-4000-8000-000000000001', 'email',
   '{"smtp_host":"smtp.demo.dana.dev","smtp_port":587,"username":"alice","password":"demo-password-alice","from_address":"alice@demo.dana.dev"}'),
  ('7e000000-0000-4000-8000-00000000000b', 'b0b00000-0000-4000-8000-000000000002', 'hubspot',
   '{"access_token":"pat-na1-00000000-demo-bob-token","portal_id":"1234567"}')
ON CONFLICT DO NOTHING;

COMMIT;

-- Passwords for signing in through Supabase Auth (the local stack's auth server is the fake in
-- tests/, which checks them as GoTrue does: bcrypt in encrypted_password). `scripts/dev env`
-- prints the first two as DEMO_EMAIL/DEMO_PASSWORD and DEMO2_EMAIL/DEMO2_PASSWORD.
UPDATE auth.users
   SET encrypted_password = extensions.crypt('demo-password-' || split_part(email, '@', 1), extensions.gen_salt('bf', 6))
 WHERE encrypted_password IS NULL
   AND email IN ('alice@demo.dana.dev', 'bob@other.dana.dev', 'admin@demo.dana.dev', 'olga@other.dana.dev', 'ops@dana.dev');
