// A verify report, shown readably: on a server without tokens the page uploads a
// candidate and lists how it differs; behind tokens a browser session only reads,
// and the page says so.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { SF, assertClean, launch, openPage } from '../lib.mjs';

const OPEN = process.env.SF_OPEN_URL; // the same store, served without tokens
const CANDIDATE = `${process.env.SF_WASM_DIR}/fixture_user_v2.wasm`;

let browser;
before(async () => { browser = await launch(); });
after(() => browser?.close());

async function verify(page, base) {
  await page.goto(`${base}/ui/types/user`);
  await page.getByLabel('Component (.wasm)').setInputFiles(CANDIDATE);
  await page.getByLabel('Aggregates to compare').fill('1000');
  await page.getByRole('button', { name: 'Verify' }).click();
}

test('without tokens, a candidate is verified and its differences listed', { skip: !OPEN && 'no SF_OPEN_URL' }, async () => {
  const { page, problems } = await openPage(browser, { token: null });
  await verify(page, OPEN);
  const report = page.locator('.report');
  await report.getByText('Differences found:').waitFor();
  assert.match(await report.textContent(), /fixture-user-v2@0\.2\.0 against user@0\.1\.0: \d+ aggregates checked, 0 agree, \d+ differ, 0 fail in the candidate/);
  const row = report.locator('tr').filter({ has: page.getByRole('link', { name: '1', exact: true }) });
  assert.match(await row.textContent(), /\/\S+/);
  await assertClean(page, problems);
});

test('with tokens, the page says a browser session cannot verify', async () => {
  const { page, problems } = await openPage(browser);
  await verify(page, SF);
  await page.getByRole('alert').getByText('A browser session only reads: verify with the command line instead').waitFor();
  await assertClean(page, problems, { statuses: [403] });
});
