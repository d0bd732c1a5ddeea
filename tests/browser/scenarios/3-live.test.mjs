// Following an aggregate live: an event appended elsewhere arrives, with the state
// the server pushes after it; paused, the page waits, and resumed, it catches up.
// Following a type's feed shows events of any aggregate as they come.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { aggregateUrl, append, assertClean, launch, openPage, unique } from '../lib.mjs';

let browser;
before(async () => { browser = await launch(); });
after(() => browser?.close());

test('an appended event arrives live, the state updates, and pause and resume catch up', async () => {
  const id = unique('live');
  await append('user', id, [['UserCreated', { id, name: 'Liv', email: 'liv@example.com', timestamp: 't1' }]]);
  const { page, problems } = await openPage(browser);
  await page.goto(aggregateUrl('user', id));
  await page.getByText('Revision 1 of 1: UserCreated').waitFor();

  const follow = page.getByRole('button', { name: 'Follow live' });
  await follow.click();
  await page.getByText('Live: new events appear as they are appended.').waitFor();

  await append('user', id, [['EmailChanged', { email: 'liv@example.org', timestamp: 't2' }]]);
  await page.getByText('Revision 2 of 2: EmailChanged').waitFor();
  const state = page.getByRole('region', { name: 'State after revision 2' });
  await state.getByText('"email": "liv@example.org"').waitFor();
  await page.getByRole('region', { name: 'Timeline' }).getByText('#2', { exact: true }).waitFor();
  await page.waitForURL((url) => url.searchParams.get('revision') === '2');

  await page.getByRole('button', { name: 'Pause' }).click();
  await page.getByText('Paused').waitFor();
  await append('user', id, [['NameChanged', { name: 'Olivia' }]]);
  await page.getByRole('button', { name: 'Resume' }).click();
  await page.getByText('Revision 3 of 3: NameChanged').waitFor();
  await page.getByRole('region', { name: 'State after revision 3' }).getByText('"name": "Olivia"').waitFor();
  await assertClean(page, problems);
});

test("a type's live feed shows events of its aggregates as they are appended", async () => {
  const { page, problems } = await openPage(browser);
  await page.goto('/ui/types/user');
  const feed = page.getByRole('region', { name: 'Live feed' });
  await feed.getByRole('button', { name: 'Follow live' }).click();
  await feed.getByText('Live: connected').waitFor();
  const id = unique('feed');
  await append('user', id, [['UserCreated', { id, name: 'Fay', email: 'fay@example.com', timestamp: 't1' }]]);
  const row = feed.locator('li').filter({ hasText: `${id} #1` });
  await row.waitFor();
  assert.match(await row.textContent(), /UserCreated/);
  await assertClean(page, problems);
});
