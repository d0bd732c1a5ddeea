// What the scenarios share: the server they test (from tests/browser/run, through the
// environment), a browser, pages that record every console error, page error and
// Content-Security-Policy violation, and API calls with the admin token.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the scenarios with tests/browser/run`);
  return value;
};

export const SF = env('SF_URL');
export const TOKENS = {
  admin: env('SF_ADMIN_TOKEN'), // everything: seeds and appends
  read: env('SF_READ_TOKEN'), // reads every type
  other: env('SF_OTHER_TOKEN'), // reads type `other` only
};
const SHOTS = process.env.SF_SHOTS ?? 'target/browser';

/** How long to wait for anything the page should show: generous, never a sleep. */
export const WAIT = 20_000;

export const launch = () => chromium.launch({
  executablePath: process.env.SF_CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update',
    '--disable-default-apps', '--disable-sync', '--no-first-run', '--disable-dev-shm-usage'],
});

/**
 * A page in a context of its own (its own cookies), `width` wide, signed in with
 * `token` (through the API, sharing the context's cookies) unless it is null.
 * `problems` collects console errors, uncaught page errors and CSP violations.
 */
export async function openPage(browser, { width = 1280, token = TOKENS.read, bypassCSP = false } = {}) {
  const context = await browser.newContext({ baseURL: SF, viewport: { width, height: 900 }, bypassCSP });
  context.setDefaultTimeout(WAIT);
  if (token) {
    const res = await context.request.post('/v1/session', { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(res.status(), 200, `sign-in: ${await res.text()}`);
  }
  await context.addInitScript(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation',
      (e) => window.__csp.push(`${e.violatedDirective} blocked ${e.blockedURI}`));
  });
  const page = await context.newPage();
  const problems = [];
  page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  return { context, page, problems };
}

/**
 * Asserts that nothing went wrong on the page: no console error, no page error, no
 * CSP violation. The browser's own "Failed to load resource" lines are expected for
 * `statuses`, HTTP statuses the scenario provokes on purpose, and with `aborted` for
 * requests it cuts off.
 */
export async function assertClean(page, problems, { statuses = [], aborted = false } = {}) {
  const expected = (p) => statuses.some((s) => p.includes(`the server responded with a status of ${s} `))
    || (aborted && p === 'console: Failed to load resource: net::ERR_FAILED');
  assert.deepEqual(problems.filter((p) => !expected(p)), []);
  assert.deepEqual(await page.evaluate(() => window.__csp), []);
}

/** An API call with a token (the admin's by default): the parsed body, or a failure. */
export async function api(method, path, body, token = TOKENS.admin) {
  const res = await fetch(`${SF}${path}`, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  assert.ok(res.ok, `${method} ${path}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** Appends events (`[[event_type, data], …]`) to an aggregate. */
export const append = (type, id, events) => api('POST', `/v1/aggregates/${encodeURIComponent(type)}/${encodeURIComponent(id)}/events`,
  { events: events.map(([event_type, data]) => ({ event_type, data })) });

/** The explorer's URL of an aggregate. */
export const aggregateUrl = (type, id, query = '') =>
  `/ui/aggregates/${encodeURIComponent(type)}/${encodeURIComponent(id)}${query}`;

/** A full-page screenshot for a person to look at (not an assertion). */
export async function shot(page, name) {
  mkdirSync(SHOTS, { recursive: true });
  const { width } = page.viewportSize();
  await page.screenshot({ path: `${SHOTS}/${name}-${width}.png`, fullPage: true });
}

/** A unique id, so scenarios never meet each other's aggregates. */
export const unique = (prefix) => `${prefix}-${process.pid}-${Date.now().toString(36)}`;
