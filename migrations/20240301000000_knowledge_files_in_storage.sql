-- Knowledge files live in the storage bucket `knowledge-files`, one row each; the old design's
-- base64 column is emptied by `dana-bff backfill-knowledge`.

ALTER TABLE public.knowledge_files
  ADD COLUMN agent_id uuid,
  ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
  ADD COLUMN cache_control text,
  ADD CONSTRAINT knowledge_files_agent_fkey FOREIGN KEY (agent_id, user_id)
    REFERENCES public.agents (id, user_id) ON DELETE SET NULL (agent_id),
  -- An object key is always inside its owner's folder, whoever writes the row.
  ADD CONSTRAINT knowledge_files_storage_path_in_owner_folder
    CHECK (storage_path IS NULL OR storage_path LIKE user_id::text || '/_%'),
  ADD CONSTRAINT knowledge_files_storage_path_key UNIQUE (storage_bucket, storage_path);
CREATE INDEX knowledge_files_agent_id_user_id_idx ON public.knowledge_files (agent_id, user_id);

-- Only Dana's storage (the service role) sets where a file is, what it is and how far it got.
CREATE TRIGGER knowledge_files_guard BEFORE INSERT OR UPDATE ON public.knowledge_files
  FOR EACH ROW EXECUTE FUNCTION dana.knowledge_files_guard();

-- The BFF acts as the user (SET LOCAL ROLE authenticated with the user's claims, so RLS decides)
-- and as the service role only where the system writes (storage columns, sessions, backfill).
GRANT authenticated, service_role TO dana_bff;

-- On a Supabase project: the bucket (private; its limits match the BFF's defaults) and the
-- storage policies Supabase projects write for per-user folders, so the same rule holds when
-- the Storage API is called directly. The local stack has no `storage` schema and skips this.
CREATE FUNCTION dana_meta.ensure_knowledge_bucket() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  action text;
BEGIN
  IF to_regclass('storage.buckets') IS NULL OR to_regclass('storage.objects') IS NULL THEN
    RETURN;
  END IF;
  INSERT INTO storage.buckets (id, name, public, file_size_limit, allowed_mime_types)
  VALUES ('knowledge-files', 'knowledge-files', false, 104857600, ARRAY[
    'application/pdf', 'text/plain', 'text/markdown', 'text/csv', 'application/json',
    'text/html', 'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
    'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
    'application/vnd.openxmlformats-officedocument.presentationml.presentation',
    'image/png', 'image/jpeg', 'image/webp'])
  ON CONFLICT (id) DO UPDATE SET public = false,
    file_size_limit = EXCLUDED.file_size_limit, allowed_mime_types = EXCLUDED.allowed_mime_types;
  FOREACH action IN ARRAY ARRAY['select', 'insert', 'update', 'delete'] LOOP
    EXECUTE format('DROP POLICY IF EXISTS %I ON storage.objects', 'knowledge_files_own_folder_' || action);
    EXECUTE format(
      'CREATE POLICY %I ON storage.objects FOR %s TO authenticated %s',
      'knowledge_files_own_folder_' || action, action,
      CASE action
        WHEN 'insert' THEN 'WITH CHECK (bucket_id = ''knowledge-files'' AND (storage.foldername(name))[1] = (SELECT auth.uid())::text)'
        WHEN 'update' THEN 'USING (bucket_id = ''knowledge-files'' AND (storage.foldername(name))[1] = (SELECT auth.uid())::text) WITH CHECK (bucket_id = ''knowledge-files'' AND (storage.foldername(name))[1] = (SELECT auth.uid())::text)'
        ELSE 'USING (bucket_id = ''knowledge-files'' AND (storage.foldername(name))[1] = (SELECT auth.uid())::text)'
      END);
  END LOOP;
END $$;
COMMENT ON FUNCTION dana_meta.ensure_knowledge_bucket() IS
  'On Supabase: the private knowledge-files bucket and storage.objects policies limiting each user to their own folder. Does nothing where the storage schema does not exist.';
SELECT dana_meta.ensure_knowledge_bucket();
