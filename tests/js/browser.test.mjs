// A real browser (Debian's chromium, headless, driven by playwright-core; nothing downloads a
// browser) signs in through the BFF from a page of an allowed origin. Only a browser enforces
// what the session cookie relies on: `__Host-` (Secure, Path=/, no Domain), SameSite, HttpOnly
// and credentialed CORS. The page is http://localhost:3000 (in the stack's BFF_CORS_ORIGINS);
// the BFF is reached as http://localhost:<port>, the same site, as a frontend and its BFF are.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run through scripts/dev test`);
  return value;
};
const bffUrl = new URL(env('API_URL'));
bffUrl.hostname = 'localhost';
const BFF = bffUrl.origin;
const PAGE_ORIGIN = 'http://localhost:3000';

let server;
let browser;

before(async () => {
  server = http.createServer((_, response) => {
    response.writeHead(200, { 'content-type': 'text/html' });
    response.end('<!doctype html><title>Dana test page</title><p>app</p>');
  });
  await new Promise((resolve) => server.listen(3000, 'localhost', resolve));
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_BIN || '/usr/bin/chromium',
    headless: true,
    // Root on a CI machine: chromium's sandbox needs an unprivileged user.
    args: ['--no-sandbox'],
  });
});

after(async () => {
  await browser?.close();
  await new Promise((resolve) => server?.close(resolve));
});

test('a browser signs in through the BFF, calls /rest/v1 with the cookie and X-CSRF, and signs out', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${PAGE_ORIGIN}/`);

  const result = await page.evaluate(
    async ({ bff, email, password, anonKey }) => {
      const call = async (path, init = {}) => {
        const response = await fetch(`${bff}${path}`, { credentials: 'include', ...init });
        let body = null;
        try { body = await response.json(); } catch { /* empty body */ }
        return { status: response.status, body };
      };
      const csrf = { 'X-CSRF': '1' };
      const out = {};
      out.login = await call('/bff/login', {
        method: 'POST',
        headers: { ...csrf, 'Content-Type': 'application/json' },
        body: JSON.stringify({ email, password }),
      });
      out.cookieSeenByScript = document.cookie;
      out.user = await call('/bff/user', { headers: csrf });
      out.rest = await call('/rest/v1/profiles?select=id', { headers: { ...csrf, apikey: anonKey } });
      out.restWithoutCsrf = await call('/rest/v1/profiles?select=id', { headers: { apikey: anonKey } });
      out.logout = await call(out.user.body.logout_url, { method: 'POST', headers: csrf });
      out.afterLogout = await call('/bff/user', { headers: csrf });
      return out;
    },
    { bff: BFF, email: env('DEMO_EMAIL'), password: env('DEMO_PASSWORD'), anonKey: env('ANON_KEY') },
  );

  assert.equal(result.login.status, 200, JSON.stringify(result.login.body));
  assert.equal(result.login.body.user.email, env('DEMO_EMAIL'));
  // HttpOnly: the page's scripts cannot read the session (cookies are per host, not per
  // port, so without HttpOnly the page on localhost:3000 would see it here).
  assert.ok(!result.cookieSeenByScript.includes('dana_session'), result.cookieSeenByScript);
  assert.equal(result.user.status, 200);
  assert.equal(result.user.body.user.email, env('DEMO_EMAIL'));
  assert.equal(result.rest.status, 200);
  assert.ok(result.rest.body.length >= 1);
  assert.ok(result.rest.body.every((row) => row.id === result.user.body.user.id), JSON.stringify(result.rest.body));
  assert.equal(result.restWithoutCsrf.status, 403);
  assert.equal(result.logout.status, 204);
  assert.equal(result.afterLogout.status, 401);
});

test('the session cookie the browser kept is __Host-, Secure, HttpOnly and SameSite=Lax', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${PAGE_ORIGIN}/`);
  const status = await page.evaluate(
    async ({ bff, email, password }) => (await fetch(`${bff}/bff/login`, {
      method: 'POST',
      credentials: 'include',
      headers: { 'X-CSRF': '1', 'Content-Type': 'application/json' },
      body: JSON.stringify({ email, password }),
    })).status,
    { bff: BFF, email: env('DEMO2_EMAIL'), password: env('DEMO2_PASSWORD') },
  );
  assert.equal(status, 200);
  const cookies = await context.cookies(BFF);
  const session = cookies.find((c) => c.name === '__Host-dana_session');
  assert.ok(session, JSON.stringify(cookies));
  assert.equal(session.httpOnly, true);
  assert.equal(session.secure, true);
  assert.equal(session.sameSite, 'Lax');
  assert.equal(session.path, '/');
  assert.equal(session.domain, 'localhost');

  // A page of an origin the BFF does not allow cannot read answers with the cookie.
  const foreign = await context.newPage();
  await foreign.route('http://localhost:3999/', (route) => route.fulfill({ contentType: 'text/html', body: '<p>other</p>' }));
  await foreign.goto('http://localhost:3999/');
  const outcome = await foreign.evaluate(async (bff) => {
    try {
      const r = await fetch(`${bff}/bff/user`, { credentials: 'include', headers: { 'X-CSRF': '1' } });
      return `read ${r.status}`;
    } catch (e) {
      return 'blocked';
    }
  }, BFF);
  assert.equal(outcome, 'blocked');
  await context.close();
});
