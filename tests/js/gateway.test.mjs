// supabase-js, unchanged, pointed at dana-bff (API_URL): what a frontend does through
// `supabase.from(...)` and `supabase.rpc(...)` must behave as against Supabase itself.
// Run by `scripts/dev test` (or: set -a; eval "$(scripts/dev env)"; cd tests/js; npm test).
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { createClient } from '@supabase/supabase-js';
import ws from 'ws';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run through scripts/dev test`);
  return value;
};
const API_URL = env('API_URL');
const ANON_KEY = env('ANON_KEY');
const ALICE = 'a11ce000-0000-4000-8000-000000000001';
const BOB = 'b0b00000-0000-4000-8000-000000000002';

// Node 20 has no global WebSocket: supabase-js's realtime client needs `ws` handed in.
const client = (accessToken) =>
  createClient(API_URL, ANON_KEY, {
    realtime: { transport: ws },
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    global: accessToken ? { headers: { Authorization: `Bearer ${accessToken}` } } : {},
  });
const anon = client();
const alice = client(env('DEMO_ALICE_JWT'));
const bob = client(env('DEMO_BOB_JWT'));

// Rows this run creates carry this marker, so reruns and parallel runs never collide.
const RUN = `js-${process.pid}-${Date.now()}`;

after(async () => {
  await alice.from('tasks').delete().like('title', `${RUN}%`);
  await bob.from('tasks').delete().like('title', `${RUN}%`);
  await alice.from('user_memory').delete().like('key', `${RUN}%`);
  for (const c of [anon, alice, bob]) c.removeAllChannels();
});

describe('reading', () => {
  test('eq, order and count=exact', async () => {
    const { data, error, count, status } = await anon
      .from('subscription_tiers')
      .select('slug, price_cents', { count: 'exact' })
      .eq('is_active', true)
      .order('price_cents', { ascending: false });
    assert.equal(error, null);
    assert.equal(status, 200);
    assert.equal(count, data.length);
    assert.deepEqual(data.map((t) => t.slug).slice(0, 3), ['business', 'pro', 'free']);
  });

  test('in, ilike and range', async () => {
    const { data, error } = await anon
      .from('subscription_tiers')
      .select('slug')
      .in('slug', ['free', 'pro', 'no-such-tier'])
      .ilike('name', '%R%')
      .order('sort_order')
      .range(0, 0);
    assert.equal(error, null);
    assert.deepEqual(data, [{ slug: 'free' }]);
  });

  test('or with values that contain spaces', async () => {
    const { data, error } = await alice
      .from('conversations')
      .select('title')
      .or('title.eq.Launch week ideas,title.eq.Hashtag research')
      .order('title');
    assert.equal(error, null);
    assert.deepEqual(data, [{ title: 'Hashtag research' }, { title: 'Launch week ideas' }]);
  });

  test('embedded resources', async () => {
    const { data, error } = await alice
      .from('conversations')
      .select('title, agents(name), messages(role, content)')
      .eq('title', 'Launch week ideas')
      .order('created_at', { referencedTable: 'messages' })
      .single();
    assert.equal(error, null);
    assert.equal(data.agents.name, 'Instagram writer');
    assert.equal(data.messages.length, 2);
    assert.deepEqual(data.messages.map((m) => m.role).sort(), ['assistant', 'user']);
  });

  test('maybeSingle and head counts', async () => {
    const { count, error } = await alice.from('messages').select('*', { count: 'exact', head: true });
    assert.equal(error, null);
    assert.equal(count, 3, 'alice has three messages');
    const none = await alice.from('tasks').select('id').eq('title', `${RUN}-absent`).maybeSingle();
    assert.equal(none.error, null);
    assert.equal(none.data, null);
  });
});

describe('writing', () => {
  test('insert one row with return=representation, then update and delete it', async () => {
    const inserted = await alice.from('tasks').insert({ title: `${RUN} one`, priority: 2 }).select().single();
    assert.equal(inserted.error, null);
    assert.equal(inserted.status, 201);
    assert.equal(inserted.data.user_id, ALICE, 'user_id defaults to the signed-in user');
    assert.equal(inserted.data.status, 'todo');

    const updated = await alice.from('tasks').update({ status: 'done' }).eq('id', inserted.data.id).select('status, updated_at').single();
    assert.equal(updated.error, null);
    assert.equal(updated.data.status, 'done');
    assert.ok(new Date(updated.data.updated_at) >= new Date(inserted.data.updated_at));

    const deleted = await alice.from('tasks').delete().eq('id', inserted.data.id).select('id');
    assert.equal(deleted.error, null);
    assert.deepEqual(deleted.data, [{ id: inserted.data.id }]);
  });

  test('insert an array of rows', async () => {
    const { data, error, status } = await alice
      .from('tasks')
      // Rows with different keys: missing columns take their defaults (Prefer: missing=default).
      .insert([{ title: `${RUN} a` }, { title: `${RUN} b`, priority: 5 }], { defaultToNull: false })
      .select('title, priority');
    assert.equal(error, null);
    assert.equal(status, 201);
    assert.deepEqual(
      data.map((t) => [t.title, t.priority]).sort(),
      [[`${RUN} a`, 3], [`${RUN} b`, 5]],
    );
  });

  test('upsert one row and an array on a unique key', async () => {
    const first = await alice.from('user_memory').upsert({ key: `${RUN}-tone`, value: 'casual' }, { onConflict: 'user_id,key' }).select().single();
    assert.equal(first.error, null);
    const again = await alice
      .from('user_memory')
      .upsert({ key: `${RUN}-tone`, value: 'formal', importance: 7 }, { onConflict: 'user_id,key' })
      .select()
      .single();
    assert.equal(again.error, null);
    assert.equal(again.data.id, first.data.id, 'the same row was updated');
    assert.equal(again.data.value, 'formal');

    const many = await alice
      .from('user_memory')
      .upsert(
        [
          { key: `${RUN}-tone`, value: 'friendly' },
          { key: `${RUN}-hashtags`, value: ['#coffee'] },
        ],
        { onConflict: 'user_id,key' },
      )
      .select('key, value');
    assert.equal(many.error, null);
    assert.equal(many.data.length, 2);
    const { count } = await alice.from('user_memory').select('*', { count: 'exact', head: true }).like('key', `${RUN}%`);
    assert.equal(count, 2);
  });

  test('rpc', async () => {
    const { data, error } = await alice.rpc('integration_types');
    assert.equal(error, null);
    assert.ok(data.some((f) => f.integration_type === 'slack' && f.field === 'bot_token' && f.secret));

  });

  test('rpc with arguments: secrets go in clear and come back masked', async () => {
    const secret = 'mongodb+srv://dana:hunter2@cluster0.example.net';
    const { data, error, status } = await alice
      .rpc('upsert_integration_config', { integration_type: 'mongodb', config: { connection_string: secret, database: 'crm' } })
      .single();
    try {
      assert.equal(error, null);
      assert.equal(status, 200);
      assert.equal(data.user_id, ALICE);
      assert.equal(data.config.database, 'crm');
      assert.notEqual(data.config.connection_string, secret, 'the secret never comes back in clear');
      assert.ok(!JSON.stringify(data).includes('hunter2'));
    } finally {
      await alice.from('integration_configs').delete().eq('integration_type', 'mongodb');
    }
  });
});

describe('errors keep PostgREST shape', () => {
  test('a check constraint violation', async () => {
    const { error, status } = await alice.from('tasks').insert({ title: '' });
    assert.equal(status, 400);
    assert.equal(error.code, '23514');
    assert.match(error.message, /tasks_title_check/);
    assert.ok('details' in error && 'hint' in error);
  });

  test('an unknown column', async () => {
    const { error, status } = await alice.from('tasks').select('no_such_column');
    assert.equal(status, 400);
    assert.equal(error.code, '42703');
  });

  test('an unknown function', async () => {
    const { error, status } = await alice.rpc('no_such_function', { a: 1 });
    assert.equal(status, 404);
    assert.equal(error.code, 'PGRST202');
    assert.ok(error.hint === null || typeof error.hint === 'string');
  });

  test('a refused token comes back as an error, not a crash', async () => {
    const forged = client(`${env('DEMO_ALICE_JWT').slice(0, -4)}AAAA`);
    const { error, status, data } = await forged.from('tasks').select('id');
    assert.equal(status, 401);
    assert.equal(data, null);
    assert.equal(error.code, 'PGRST301');
  });
});

describe('row-level security through the BFF', () => {
  test('each user sees only their own rows', async () => {
    const a = await alice.from('tasks').select('user_id');
    const b = await bob.from('tasks').select('user_id');
    assert.ok(a.data.length > 0 && a.data.every((t) => t.user_id === ALICE));
    assert.ok(b.data.length > 0 && b.data.every((t) => t.user_id === BOB));
  });

  test("a user cannot change or delete another user's rows", async () => {
    const bobs = await bob.from('tasks').insert({ title: `${RUN} bob's` }).select().single();
    assert.equal(bobs.error, null);
    const update = await alice.from('tasks').update({ title: 'hijacked' }).eq('id', bobs.data.id).select();
    assert.equal(update.error, null);
    assert.deepEqual(update.data, [], 'no row matched for alice');
    const del = await alice.from('tasks').delete().eq('id', bobs.data.id).select();
    assert.deepEqual(del.data, []);
    const still = await bob.from('tasks').select('title').eq('id', bobs.data.id).single();
    assert.equal(still.data.title, `${RUN} bob's`);
  });

  test("a user cannot insert a row in another user's name", async () => {
    const { error, status } = await alice.from('tasks').insert({ title: `${RUN} forged`, user_id: BOB });
    assert.equal(status, 403);
    assert.equal(error.code, '42501');
  });

  test('anon reads public catalogs only', async () => {
    const tiers = await anon.from('subscription_tiers').select('slug');
    assert.ok(tiers.data.length >= 3);
    const tasks = await anon.from('tasks').select('id');
    assert.deepEqual(tasks.data ?? [], []);
    const write = await anon.from('tasks').insert({ title: `${RUN} anon` });
    assert.ok([401, 403].includes(write.status), `status ${write.status}`);
    assert.equal(write.error.code, '42501');
  });
});
