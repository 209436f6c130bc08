// supabase-js's auth client, unchanged, pointed at the BFF: `/auth/v1` passes through to
// Supabase Auth (the stack runs the fake from tests/), so Bearer-token apps keep signing in.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createClient } from '@supabase/supabase-js';
import ws from 'ws';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run through scripts/dev test`);
  return value;
};

const client = () =>
  createClient(env('API_URL'), env('ANON_KEY'), {
    realtime: { transport: ws },
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
  });

test('signInWithPassword, getUser, a query as the user, refreshSession and signOut', async () => {
  const supabase = client();
  const { data, error } = await supabase.auth.signInWithPassword({
    email: env('DEMO_EMAIL'),
    password: env('DEMO_PASSWORD'),
  });
  assert.equal(error, null);
  assert.equal(data.user.email, env('DEMO_EMAIL'));
  const { data: user } = await supabase.auth.getUser();
  assert.equal(user.user.id, data.user.id);
  const { data: rows, error: restError } = await supabase.from('profiles').select('id');
  assert.equal(restError, null);
  assert.ok(rows.length >= 1 && rows.every((r) => r.id === data.user.id));
  const { data: refreshed, error: refreshError } = await supabase.auth.refreshSession();
  assert.equal(refreshError, null);
  assert.notEqual(refreshed.session.refresh_token, data.session.refresh_token);
  const { error: outError } = await supabase.auth.signOut();
  assert.equal(outError, null);
});

test('a wrong password is AuthApiError invalid_credentials, as from Supabase', async () => {
  const { data, error } = await client().auth.signInWithPassword({
    email: env('DEMO_EMAIL'),
    password: 'not-the-password',
  });
  assert.equal(data.session, null);
  assert.equal(error.name, 'AuthApiError');
  assert.equal(error.status, 400);
  assert.equal(error.code, 'invalid_credentials');
});
