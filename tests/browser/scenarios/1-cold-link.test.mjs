// A link to a revision, opened cold, shows that revision's state; so does a link to
// an instant (`as_of`).

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { aggregateUrl, api, assertClean, launch, openPage } from '../lib.mjs';

let browser;
before(async () => { browser = await launch(); });
after(() => browser?.close());

test('a cold link to revision 2 shows the state after the email change, before the name change', async () => {
  const { page, problems } = await openPage(browser);
  const response = await page.goto(aggregateUrl('user', '1', '?revision=2'));
  assert.match(response.headers()['content-security-policy'] ?? '', /script-src 'self'/);

  await page.getByText('Revision 2 of 3: EmailChanged').waitFor();
  const state = page.getByRole('region', { name: 'State after revision 2' });
  await state.getByText('"email": "ann@example.org"').waitFor();
  assert.ok(await state.getByText('"name": "Ann"').isVisible());
  assert.equal(await state.getByText('Annie').count(), 0, 'the later name is not in the state at revision 2');
  assert.equal(await page.locator('#scrubber').inputValue(), '2');
  assert.equal(await page.title(), 'user 1 at revision 2 · Streamfold explorer');
  // The event shown is the one at revision 2, and the timeline marks it.
  await page.getByRole('region', { name: 'Event', exact: true }).getByText('EmailChanged').first().waitFor();
  await page.locator('.timeline li[aria-current="true"]').getByText('#2').waitFor();
  // The curl command asks the API for the same state.
  await page.getByText('curl for this state').click();
  assert.equal(await page.locator('#curl').textContent(),
    `curl -sS '${new URL('/v1/aggregates/user/1/state?at_revision=2', page.url()).href}' -H "Authorization: Bearer $STREAMFOLD_TOKEN"`);
  await assertClean(page, problems);
});

test('a cold link to an instant shows the last revision stored by then', async () => {
  const { events } = await api('GET', '/v1/aggregates/user/1/events');
  const first = new Date(Number(events[0].position.split('-')[0])).toISOString();
  const { page, problems } = await openPage(browser);
  await page.goto(aggregateUrl('user', '1', `?as_of=${encodeURIComponent(first)}`));

  await page.getByText(`As of ${first}: revision 1 of 3`).waitFor();
  const state = page.getByRole('region', { name: 'State after revision 1' });
  await state.getByText('"email": "ann@example.com"').waitFor();
  assert.equal(await page.locator('#scrubber').inputValue(), '1');
  await assertClean(page, problems);
});

test('the as-of field goes to an instant, and the link says which', async () => {
  const { page, problems } = await openPage(browser);
  await page.goto(aggregateUrl('user', '1', '?revision=1'));
  await page.getByText('Revision 1 of 3: UserCreated').waitFor();
  const asOf = page.getByLabel('As of (UTC)');

  await asOf.fill('2001-01-01T00:00:00');
  await page.getByRole('button', { name: 'Show' }).click();
  await page.getByText('Nothing was stored at or before 2001-01-01T00:00:00.000Z: the first event came later.').waitFor();

  await asOf.fill('2999-01-01T00:00:00');
  await page.getByRole('button', { name: 'Show' }).click();
  await page.getByText('As of 2999-01-01T00:00:00.000Z: revision 3 of 3').waitFor();
  await page.waitForURL((url) => url.searchParams.get('as_of') === '2999-01-01T00:00:00.000Z');
  await page.goBack();
  await page.getByText('Nothing was stored at or before 2001-01-01T00:00:00.000Z').waitFor();
  await assertClean(page, problems);
});
