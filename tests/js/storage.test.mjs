// supabase-js's storage client, unchanged, pointed at dana-bff: the methods a frontend calls on
// `supabase.storage.from('knowledge-files')` behave as against Supabase Storage, errors included,
// and each user reaches only their own folder.
// Run by `scripts/dev test` (or: set -a; eval "$(scripts/dev env)"; cd tests/js; npm test).
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createClient } from '@supabase/supabase-js';
import ws from 'ws';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run through scripts/dev test`);
  return value;
};
const API_URL = env('API_URL');
const ALICE = 'a11ce000-0000-4000-8000-000000000001';
const BOB = 'b0b00000-0000-4000-8000-000000000002';

const client = (accessToken) =>
  createClient(API_URL, env('ANON_KEY'), {
    realtime: { transport: ws },
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    global: accessToken ? { headers: { Authorization: `Bearer ${accessToken}` } } : {},
  });
const alice = client(env('DEMO_ALICE_JWT')).storage.from('knowledge-files');
const bob = client(env('DEMO_BOB_JWT')).storage.from('knowledge-files');

// Every object this run writes lives under this folder of Alice's.
const RUN = `js-${process.pid}-${Date.now()}`;
const mine = (name) => `${ALICE}/${RUN}/${name}`;
const sha = (bytes) => createHash('sha256').update(bytes).digest('hex');

after(async () => {
  const { data } = await alice.list(`${ALICE}/${RUN}`, { limit: 1000 });
  if (data?.length) await alice.remove(data.filter((o) => o.id).map((o) => mine(o.name)));
});

describe('uploading', () => {
  test('a Blob (multipart) answers the path, id and full key', async () => {
    const { data, error } = await alice.upload(mine('notes.md'), new Blob(['# Notes\n'], { type: 'text/markdown' }));
    assert.equal(error, null);
    assert.equal(data.path, mine('notes.md'));
    assert.equal(data.fullPath, `knowledge-files/${mine('notes.md')}`);
    assert.match(data.id, /^[0-9a-f-]{36}$/);
  });

  test('a raw body carries its content type, cache control and metadata', async () => {
    const { error } = await alice.upload(mine('raw.csv'), 'a,b\n1,2\n', {
      contentType: 'text/csv',
      cacheControl: '120',
      metadata: { source: 'crm' },
    });
    assert.equal(error, null);
    const { data: info } = await alice.info(mine('raw.csv'));
    assert.equal(info.contentType, 'text/csv');
    assert.equal(info.cacheControl, 'max-age=120');
    assert.deepEqual(info.metadata, { source: 'crm' });
    assert.equal(info.size, 8);
    assert.equal(info.name, mine('raw.csv'));
  });

  test('an existing path is KeyAlreadyExists unless upserting; update replaces', async () => {
    await alice.upload(mine('v.txt'), 'one', { contentType: 'text/plain' });
    const dup = await alice.upload(mine('v.txt'), 'two', { contentType: 'text/plain' });
    assert.equal(dup.error.statusCode, '409');
    assert.equal(dup.error.status, 400);
    assert.equal((await alice.upload(mine('v.txt'), 'two', { contentType: 'text/plain', upsert: true })).error, null);
    assert.equal(await (await alice.download(mine('v.txt'))).data.text(), 'two');
    assert.equal((await alice.update(mine('v.txt'), 'three', { contentType: 'text/plain' })).error, null);
    assert.equal(await (await alice.download(mine('v.txt'))).data.text(), 'three');
    const missing = await alice.update(mine('never-uploaded.txt'), 'x', { contentType: 'text/plain' });
    assert.equal(missing.error.statusCode, '404');
  });

  test('a forbidden type is InvalidMimeType and stores nothing', async () => {
    const { error } = await alice.upload(mine('tool.exe'), 'MZ', { contentType: 'application/x-msdownload' });
    assert.equal(error.statusCode, '415');
    assert.equal((await alice.exists(mine('tool.exe'))).data, false);
  });

  test('paths outside the own folder, and other buckets, are refused', async () => {
    assert.equal((await alice.upload(`${BOB}/${RUN}/x.txt`, 'x')).error.statusCode, '403');
    assert.equal((await alice.upload(`${RUN}/x.txt`, 'x')).error.statusCode, '403');
    const other = await client(env('DEMO_ALICE_JWT')).storage.from('avatars').upload(mine('x.txt'), 'x');
    assert.equal(other.error.statusCode, '404');
    assert.equal(other.error.message, 'Bucket not found');
  });
});

describe('reading', () => {
  const bytes = new Uint8Array(300_000).map((_, i) => (i * 17) % 256);

  test('download returns the bytes; exists and info describe them', async () => {
    await alice.upload(mine('data.pdf'), new Blob([bytes], { type: 'application/pdf' }));
    const { data, error } = await alice.download(mine('data.pdf'));
    assert.equal(error, null);
    assert.equal(sha(new Uint8Array(await data.arrayBuffer())), sha(bytes));
    assert.equal((await alice.exists(mine('data.pdf'))).data, true);
    assert.equal((await alice.exists(mine('nope.pdf'))).data, false);
    const { data: info } = await alice.info(mine('data.pdf'));
    assert.equal(info.size, bytes.length);
    assert.equal(info.etag, `"${sha(bytes)}"`);
    const missing = await alice.download(mine('nope.pdf'));
    assert.equal(missing.error.statusCode, '404');
  });

  test('list: names relative to the prefix, folders, limit, offset, sortBy, search', async () => {
    for (const name of ['b.txt', 'a.txt', 'c.txt', 'sub/inner.txt']) {
      await alice.upload(mine(`list/${name}`), name, { contentType: 'text/plain' });
    }
    const { data } = await alice.list(`${ALICE}/${RUN}/list`);
    assert.deepEqual(data.map((o) => o.name), ['a.txt', 'b.txt', 'c.txt', 'sub']);
    const folder = data.find((o) => o.name === 'sub');
    assert.equal(folder.id, null);
    assert.equal(folder.metadata, null);
    const file = data.find((o) => o.name === 'a.txt');
    assert.equal(file.metadata.size, 5);
    assert.equal(file.metadata.mimetype, 'text/plain');
    const page = await alice.list(`${ALICE}/${RUN}/list`, { limit: 2, offset: 1, sortBy: { column: 'name', order: 'desc' } });
    assert.deepEqual(page.data.map((o) => o.name), ['c.txt', 'b.txt']);
    const searched = await alice.list(`${ALICE}/${RUN}/list`, { search: 'B' });
    assert.deepEqual(searched.data.map((o) => o.name), ['b.txt']);
  });

  test('signed URLs download without a session, until they expire or are tampered with', async () => {
    await alice.upload(mine('signed.txt'), 'signed content', { contentType: 'text/plain' });
    const { data, error } = await alice.createSignedUrl(mine('signed.txt'), 60);
    assert.equal(error, null);
    assert.ok(data.signedUrl.startsWith(`${API_URL}/storage/v1/object/sign/knowledge-files/${ALICE}/`));
    assert.equal(await (await fetch(data.signedUrl)).text(), 'signed content');
    const tampered = data.signedUrl.replace('signed.txt', 'other.txt');
    assert.equal((await fetch(tampered)).status, 400);
    const download = await alice.createSignedUrl(mine('signed.txt'), 60, { download: 'renamed.txt' });
    const response = await fetch(download.data.signedUrl);
    assert.match(response.headers.get('content-disposition'), /filename="renamed.txt"/);
    const many = await alice.createSignedUrls([mine('signed.txt'), mine('absent.txt')], 60);
    assert.ok(many.data[0].signedUrl);
    assert.equal(many.data[1].signedUrl, null);
    assert.match(many.data[1].error, /does not exist/);
  });
});

describe('changing', () => {
  test('copy and move stay in the own folder; remove answers what it deleted', async () => {
    await alice.upload(mine('orig.txt'), 'original', { contentType: 'text/plain' });
    const copied = await alice.copy(mine('orig.txt'), mine('copy.txt'));
    assert.equal(copied.error, null);
    assert.equal(copied.data.path, `knowledge-files/${mine('copy.txt')}`);
    const moved = await alice.move(mine('copy.txt'), mine('moved.txt'));
    assert.equal(moved.error, null);
    assert.equal(await (await alice.download(mine('moved.txt'))).data.text(), 'original');
    assert.equal((await alice.exists(mine('copy.txt'))).data, false);
    assert.equal((await alice.move(mine('moved.txt'), `${BOB}/stolen.txt`)).error.statusCode, '403');
    const removed = await alice.remove([mine('orig.txt'), mine('moved.txt'), mine('never.txt')]);
    assert.deepEqual(removed.data.map((o) => o.name).sort(), [mine('moved.txt'), mine('orig.txt')]);
    assert.equal((await alice.exists(mine('orig.txt'))).data, false);
  });
});

describe('another user', () => {
  test('Bob cannot read, list, sign, move or remove Alice\'s file', async () => {
    await alice.upload(mine('private.txt'), 'alice only', { contentType: 'text/plain' });
    assert.equal((await bob.download(mine('private.txt'))).error.statusCode, '403');
    assert.equal((await bob.info(mine('private.txt'))).error.statusCode, '403');
    assert.equal((await bob.exists(mine('private.txt'))).data, false);
    assert.deepEqual((await bob.list(`${ALICE}/${RUN}`)).data, []);
    assert.equal((await bob.createSignedUrl(mine('private.txt'), 60)).error.statusCode, '403');
    assert.equal((await bob.move(mine('private.txt'), `${BOB}/taken.txt`)).error.statusCode, '403');
    assert.deepEqual((await bob.remove([mine('private.txt')])).data, []);
    assert.equal(await (await alice.download(mine('private.txt'))).data.text(), 'alice only');
  });
});
