// Hostile text, in event data (keys and values), event types, aggregate ids and a
// reducer's rejection message, is shown as text: nothing runs, nothing is created
// from it, and the page logs no error.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { aggregateUrl, append, assertClean, launch, openPage, unique } from '../lib.mjs';

const SCRIPT = '<script>window.__pwned=1</script>';
const BREAKOUT = '"><img src=x onerror="window.__pwned=1">';

let browser;
before(async () => { browser = await launch(); });
after(() => browser?.close());

/** Nothing ran and no element came from the text: one script (the page's own), no image. */
async function assertInert(page) {
  assert.equal(await page.evaluate(() => window.__pwned), undefined);
  assert.deepEqual(await page.evaluate(() => [...document.scripts].map((s) => new URL(s.src).pathname.split('/').pop())), ['app.js']);
  assert.equal(await page.locator('img, iframe, object, embed').count(), 0);
}

test('hostile event data, event types and ids are shown as text', async () => {
  const id = unique(`x${BREAKOUT}`);
  await append('user', id, [
    ['UserCreated', { id: 7, name: SCRIPT, email: BREAKOUT, timestamp: 't1', [SCRIPT]: BREAKOUT, [BREAKOUT]: SCRIPT }],
    [`<img src=x onerror="window.__pwned=1">`, { [SCRIPT]: [BREAKOUT] }],
  ]);
  const { page, problems } = await openPage(browser);

  // The id, in the type's list of ids.
  await page.goto('/ui/types/user');
  await page.getByLabel('Id starts with').fill(id.slice(0, 20));
  await page.getByRole('button', { name: 'Search' }).click();
  await page.getByRole('link', { name: id, exact: true }).click();

  // The aggregate at revision 1: event data, state and diff.
  await page.getByText('Revision 2 of 2').waitFor();
  await page.getByRole('link', { name: /^#1 UserCreated/ }).click();
  await page.getByText('Revision 1 of 2: UserCreated').waitFor();
  const event = page.getByRole('region', { name: 'Event', exact: true });
  await event.getByText(`${JSON.stringify(SCRIPT)}: ${JSON.stringify(BREAKOUT)}`).waitFor();
  await event.getByText(`${JSON.stringify(BREAKOUT)}: ${JSON.stringify(SCRIPT)}`).waitFor();
  const state = page.getByRole('region', { name: 'State after revision 1' });
  await state.getByText(`"name": ${JSON.stringify(SCRIPT)}`).waitFor();
  const changes = page.getByRole('region', { name: 'What it changed' });
  await changes.getByText(JSON.stringify(BREAKOUT), { exact: true }).waitFor();

  // The hostile event type, in the event and the timeline.
  await page.getByRole('button', { name: 'Next', exact: true }).click();
  await event.getByText(`<img src=x onerror="window.__pwned=1">`, { exact: true }).waitFor();
  await page.getByRole('region', { name: 'Timeline' }).getByText(`<img src=x onerror="window.__pwned=1">`, { exact: true }).waitFor();
  await assertInert(page);
  await assertClean(page, problems);
});

test("a reducer's hostile rejection message is shown as text, with the failing event", async () => {
  const id = unique('refuse');
  await append('hostile', id, [['Counted', {}], ['Refuse', { why: SCRIPT }]]);
  const { page, problems } = await openPage(browser);
  await page.goto(aggregateUrl('hostile', id));

  const failure = page.getByRole('alert').filter({ hasText: 'The reducer rejected the history' });
  await failure.waitFor();
  assert.match(await failure.textContent(), /fixture-hostile@0\.1\.0 rejected event #2 \(Refuse, id [0-9a-f-]+\) \(invalid-data\)/);
  const message = failure.getByRole('region', { name: "The reducer's message" });
  // The server escaped the terminal controls; the page shows the markup as it is.
  const shown = await message.textContent();
  assert.ok(shown.includes(`${SCRIPT}${BREAKOUT}`), shown.slice(0, 300));
  assert.match(shown, /^\\u\{1b\}\[2J/);

  // The event before the failing one still has a state; the button goes to the failing one.
  await page.getByRole('button', { name: 'First', exact: true }).click();
  await page.getByRole('region', { name: 'State after revision 1' }).getByText('1', { exact: true }).waitFor();
  await page.getByRole('button', { name: 'Latest', exact: true }).click();
  await failure.getByRole('button', { name: 'Show event #2' }).click();
  await page.getByText('Revision 2 of 2: Refuse').waitFor();
  await assertInert(page);
  // The failing state is a 422 by design: the browser logs it as a failed load.
  await assertClean(page, problems, { statuses: [422] });
});
