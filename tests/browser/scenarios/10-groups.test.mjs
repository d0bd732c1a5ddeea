// A type's durable subscription groups: a group made over HTTP, with a consumer
// holding deliveries and an event a worker parked with a hostile reason, is listed
// on the type's page with its figures and consumer; its parked events show the
// reason as text, and link to the aggregate at that revision.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { aggregateUrl, api, assertClean, launch, openPage, shot, unique } from '../lib.mjs';

const HOSTILE = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=1">';

let browser;
before(async () => { browser = await launch(); });
after(() => browser?.close());

/** A group's figures as the page shows them: `{Pending: '3', Parked: '1', …}`. */
const stats = (block) => block.locator('dl.stats').evaluate((dl) => Object.fromEntries(
  [...dl.querySelectorAll('div')].map((d) => [d.querySelector('dt').textContent, d.querySelector('dd').textContent])));

test("a type's groups show their figures, consumers and parked events, as text", async () => {
  const group = unique('mailer');
  const path = `/v1/groups/user/${encodeURIComponent(group)}`;
  assert.equal((await api('PUT', path, { start: 'beginning' })).created, true);
  const { deliveries } = await api('POST', `${path}/fetch`, { consumer: 'worker-1', max: 5 });
  assert.ok(deliveries.length > 0, 'the fetch handed out events of the seeded users');
  const [first] = deliveries;
  const nacked = await api('POST', `${path}/nack`, { deliveries: [first.delivery], action: 'park', reason: HOSTILE });
  assert.equal(nacked.done, 1);

  const { page, problems } = await openPage(browser);
  await page.goto('/ui/types/user');
  const section = page.getByRole('region', { name: 'Durable subscription groups' });
  const block = section.getByRole('article', { name: `Group ${group}` });
  await block.waitFor();
  const figures = await stats(block);
  assert.equal(figures.Start, 'beginning');
  assert.equal(figures.Parked, '1');
  assert.ok(Number(figures.Pending) >= 0, `pending: ${figures.Pending}`);
  assert.match(figures['Ack timeout'], /\d/);
  assert.match(figures['Max deliveries'], /^\d+$/);

  const consumers = block.getByRole('table', { name: `Consumers of ${group}` });
  const consumer = consumers.getByRole('row').filter({ has: page.getByRole('rowheader', { name: 'worker-1', exact: true }) });
  await consumer.waitFor();
  assert.match(await consumer.locator('time').textContent(), /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z$/);

  await block.getByRole('button', { name: 'Show parked' }).click();
  const parked = block.getByRole('table', { name: `Parked events of ${group}` });
  const row = parked.locator('tbody tr');
  await row.getByText(HOSTILE, { exact: true }).waitFor();
  assert.equal(await row.count(), 1);
  const ev = first.event;
  const link = row.getByRole('link', { name: `${ev.aggregate_id} #${ev.revision}`, exact: true });
  assert.equal(await link.getAttribute('href'), aggregateUrl('user', ev.aggregate_id, `?revision=${ev.revision}`));
  const cells = await row.locator('th, td').allTextContents();
  assert.deepEqual(cells, [`${first.partition}/${ev.position}`, `${ev.aggregate_id} #${ev.revision}`,
    ev.event_type, 'nacked by a worker', HOSTILE, String(first.delivery_count)]);
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  assert.equal(await page.locator('img, iframe, object, embed').count(), 0);
  await shot(page, 'groups');
  await page.setViewportSize({ width: 390, height: 900 });
  await shot(page, 'groups');
  await page.setViewportSize({ width: 1280, height: 900 });

  // A refresh keeps the parked events shown; the link opens the aggregate there.
  await section.getByRole('button', { name: 'Refresh groups' }).click();
  await parked.getByText(HOSTILE, { exact: true }).waitFor();
  await link.click();
  await page.waitForURL((url) => url.pathname === aggregateUrl('user', ev.aggregate_id)
    && url.searchParams.get('revision') === String(ev.revision));
  await page.getByText(`Revision ${ev.revision} of `).first().waitFor();
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  await assertClean(page, problems);
});

test('a type without groups says so, and how to make one', async () => {
  const { page, problems } = await openPage(browser);
  await page.goto('/ui/types/hostile');
  const section = page.getByRole('region', { name: 'Durable subscription groups' });
  await section.getByText('No groups on this type.').waitFor();
  await section.getByText('PUT /v1/groups/hostile/{group}').waitFor();
  await assertClean(page, problems);
});
