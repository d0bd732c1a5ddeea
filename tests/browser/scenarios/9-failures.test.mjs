// A lost connection and a busy server each get a clear message and a way to retry.
// Both are made in the browser (its requests cut off or answered for the server), so
// the real server stays up for the other scenarios.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { aggregateUrl, assertClean, launch, openPage } from '../lib.mjs';

let browser;
before(async () => { browser = await launch(); });
after(() => browser?.close());

test('a lost connection says so, and retry recovers once the server answers again', async () => {
  const { page, problems } = await openPage(browser);
  const cut = (route) => route.abort('failed');
  await page.route('**/v1/aggregates/user/1', cut);
  await page.goto(aggregateUrl('user', '1', '?revision=2'));
  const alert = page.getByRole('alert').filter({ has: page.getByRole('heading', { name: 'Connection lost' }) });
  await alert.waitFor();
  assert.match(await alert.textContent(), /could not be reached/);

  await page.unroute('**/v1/aggregates/user/1', cut);
  await alert.getByRole('button', { name: 'Retry' }).click();
  await page.getByText('Revision 2 of 3: EmailChanged').waitFor();
  await assertClean(page, problems, { aborted: true });
});

test('a busy server (503) says when to retry', async () => {
  const { page, problems } = await openPage(browser);
  await page.route('**/v1/aggregates/user/1/state?at_revision=2', (route) => route.fulfill({
    status: 503,
    headers: { 'Retry-After': '7' },
    contentType: 'application/problem+json',
    body: JSON.stringify({ type: 'urn:streamfold:problem:busy', title: 'Too busy', status: 503, detail: '16 replays are running, the most this server runs at once' }),
  }));
  await page.goto(aggregateUrl('user', '1', '?revision=2'));
  const alert = page.getByRole('alert').filter({ has: page.getByRole('heading', { name: 'The server is busy: Too busy' }) });
  await alert.waitFor();
  assert.match(await alert.textContent(), /16 replays are running, the most this server runs at once Retry in 7 s\./);
  await page.unrouteAll();
  await alert.getByRole('button', { name: 'Retry' }).click();
  await page.getByRole('region', { name: 'State after revision 2' }).getByText('"email": "ann@example.org"').waitFor();
  await assertClean(page, problems, { statuses: [503] });
});
