// Signing in: the page asks for a token, refuses one the server does not know, and
// says plainly when the token signed in with does not cover what is asked for.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { TOKENS, aggregateUrl, assertClean, launch, openPage } from '../lib.mjs';

let browser;
before(async () => { browser = await launch(); });
after(() => browser?.close());

test('an unknown token is refused, a token for another type is not allowed, the right one shows the state', async () => {
  const { page, problems } = await openPage(browser, { token: null });
  await page.goto('/ui/');
  await page.getByRole('heading', { name: 'Sign-in needed' }).waitFor();

  const token = page.getByLabel('Access token');
  await token.fill('sft_not-a-token-of-this-server');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('Refused: this token is not known to this server.').waitFor();

  // A read token for type `other` only: signed in, and user is not among the types.
  await token.fill(TOKENS.other);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('Signed in: read, types other').waitFor();
  await page.getByRole('heading', { name: 'Aggregate types' }).waitFor();
  assert.equal(await page.getByRole('link', { name: 'user', exact: true }).count(), 0);

  await page.goto(aggregateUrl('user', '1'));
  const refused = page.getByRole('alert').filter({ has: page.getByRole('heading', { name: 'Not allowed' }) });
  await refused.waitFor();
  assert.match(await refused.textContent(), /Sign in with a token that covers this/);

  // Signing in again, from the refusal, with a token that covers `user`.
  await refused.getByLabel('Access token').fill(TOKENS.read);
  await refused.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('Revision 3 of 3: NameChanged').waitFor();
  await page.getByText('Signed in: read, all types').waitFor();

  // Signed out, the page asks again.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByRole('heading', { name: 'Sign-in needed' }).waitFor();
  await assertClean(page, problems, { statuses: [401, 403] });
});
