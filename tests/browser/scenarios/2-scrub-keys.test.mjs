// Scrubbing with the keyboard moves through the revisions, and the diff shows what
// each event changed; a jump is a history entry that the back button undoes.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { aggregateUrl, assertClean, launch, openPage } from '../lib.mjs';

let browser;
before(async () => { browser = await launch(); });
after(() => browser?.close());

/** The rows of the "what it changed" table: `field kind` each. */
async function changes(page) {
  const rows = page.getByRole('region', { name: 'What it changed' }).locator('tbody tr');
  return (await rows.evaluateAll((trs) => trs.map((tr) => `${tr.cells[0].textContent} ${tr.cells[1].textContent}`)));
}

async function at(page, revision, eventType) {
  await page.getByText(`Revision ${revision} of 3: ${eventType}`).waitFor();
  await page.waitForURL((url) => url.searchParams.get('revision') === String(revision));
}

test('arrow, Home and End keys on the scrubber move the position and the diff follows', async () => {
  const { page, problems } = await openPage(browser);
  await page.goto(aggregateUrl('user', '1', '?revision=1'));
  await at(page, 1, 'UserCreated');
  assert.deepEqual(await changes(page), ['/id added', '/name added', '/email added', '/created_at added']);

  await page.locator('#scrubber').focus();
  await page.keyboard.press('ArrowRight');
  await at(page, 2, 'EmailChanged');
  assert.deepEqual(await changes(page), ['/email changed', '/email_updated_at added']);

  await page.keyboard.press('End');
  await at(page, 3, 'NameChanged');
  assert.deepEqual(await changes(page), ['/name changed']);
  const row = page.getByRole('region', { name: 'What it changed' }).locator('tbody tr');
  assert.deepEqual(await row.locator('td code').allTextContents(), ['"Ann"', '"Annie"']);

  await page.keyboard.press('Home');
  await at(page, 1, 'UserCreated');
  await page.keyboard.press('ArrowLeft'); // already the first: stays
  await page.keyboard.press('ArrowRight');
  await page.keyboard.press('ArrowRight');
  await at(page, 3, 'NameChanged');

  // The same keys work on the step buttons.
  await page.getByRole('button', { name: 'Previous', exact: true }).focus();
  await page.keyboard.press('ArrowLeft');
  await at(page, 2, 'EmailChanged');
  await assertClean(page, problems);
});

test('jumping to a revision is a history entry: back returns to where it was', async () => {
  const { page, problems } = await openPage(browser);
  await page.goto(aggregateUrl('user', '1', '?revision=3'));
  await at(page, 3, 'NameChanged');
  await page.getByLabel('Revision', { exact: true }).fill('1');
  await page.getByRole('button', { name: 'Go', exact: true }).click();
  await at(page, 1, 'UserCreated');
  await page.goBack();
  await at(page, 3, 'NameChanged');
  assert.deepEqual(await changes(page), ['/name changed']);
  await assertClean(page, problems);
});

test('a long history is read a page at a time', async () => {
  const { page, problems } = await openPage(browser);
  await page.goto(aggregateUrl('user', 'long'));
  await page.getByText('Revision 2500 of 2500').waitFor();
  const timeline = page.getByRole('region', { name: 'Timeline' });
  await timeline.getByText('100 of 2500 events read').waitFor();
  assert.equal(await timeline.locator('li').count(), 100);
  assert.match(await timeline.locator('li').first().textContent(), /^#2500 NameChanged/);
  await timeline.getByRole('button', { name: 'Load more' }).click();
  await timeline.getByText('200 of 2500 events read').waitFor();
  assert.equal(await timeline.locator('li').count(), 200);

  // Filtered by event type, a click reads a bounded number of events, not all of them.
  await timeline.getByLabel('Event type').fill('UserCreated');
  await timeline.getByRole('button', { name: 'Filter' }).click();
  await timeline.getByText('2000 of 2500 events read, 0 matching: load more for the rest.').waitFor();
  await timeline.getByRole('button', { name: 'Load more' }).click();
  await timeline.getByText('2500 of 2500 events read, 1 matching.').waitFor();
  assert.match(await timeline.locator('li').first().textContent(), /^#1 UserCreated/);
  await assertClean(page, problems);
});
