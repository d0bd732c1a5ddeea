// What-if: the state under another registered reducer version beside the active
// one's, with the differences marked; the comparison is part of the link.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { aggregateUrl, assertClean, launch, openPage } from '../lib.mjs';

let browser;
before(async () => { browser = await launch(); });
after(() => browser?.close());

test('comparing with fixture-user-v2 marks the upper-cased name and its extra field', async () => {
  const { page, problems } = await openPage(browser);
  await page.goto(aggregateUrl('user', '1', '?revision=3'));
  await page.getByText('Revision 3 of 3: NameChanged').waitFor();

  const select = page.getByLabel('Compare with reducer');
  const options = await select.locator('option').allTextContents();
  assert.ok(options.includes('user@0.1.0 (active)'), options.join(', '));
  await select.selectOption({ label: 'fixture-user-v2@0.2.0' });

  const state = page.getByRole('region', { name: 'State after revision 3' });
  await state.getByText(/fields differ between user@0\.1\.0 and fixture-user-v2@0\.2\.0/).waitFor();
  const v2 = state.getByRole('figure', { name: 'fixture-user-v2@0.2.0' });
  // Marked: the name (upper case under v2) and what only one of them has.
  await v2.locator('mark').filter({ hasText: /"name": "ANNIE"/ }).waitFor();
  await v2.locator('mark').filter({ hasText: '"v2_events": 3' }).waitFor();
  const active = state.getByRole('figure', { name: 'user@0.1.0 (active)' });
  await active.locator('mark').filter({ hasText: /"name": "Annie"/ }).waitFor();
  // The email is the same under both: not marked.
  assert.equal(await active.locator('mark').filter({ hasText: '"email"' }).count(), 0);
  assert.equal(await active.locator('span').filter({ hasText: '"email": "ann@example.org"' }).count(), 1);
  // The table of differences names the field and both values.
  const nameRow = state.locator('table.diff tr').filter({ hasText: '/name' });
  assert.deepEqual(await nameRow.locator('td code').allTextContents(), ['"Annie"', '"ANNIE"']);

  // The link keeps the comparison: opened cold, it shows the same.
  await page.waitForURL((url) => url.searchParams.has('compare'));
  await page.reload();
  await page.getByRole('figure', { name: 'fixture-user-v2@0.2.0' }).locator('mark').filter({ hasText: /"name": "ANNIE"/ }).waitFor();
  assert.equal(await page.getByLabel('Compare with reducer').locator('option:checked').textContent(), 'fixture-user-v2@0.2.0');
  await assertClean(page, problems);
});
