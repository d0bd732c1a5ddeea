// axe-core on the main views, at a laptop's width and a phone's: no serious or
// critical violation. Each view is also written as a screenshot under target/browser.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { after, before, test } from 'node:test';
import { aggregateUrl, launch, openPage, shot } from '../lib.mjs';

const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

/** The views, each with what shows it is ready. */
const VIEWS = [
  { name: 'types', url: '/ui/', ready: (p) => p.getByRole('link', { name: 'user', exact: true }) },
  { name: 'type', url: '/ui/types/user', ready: (p) => p.getByText('user@0.1.0').first() },
  { name: 'aggregate', url: aggregateUrl('user', '1', '?revision=2'), ready: (p) => p.getByText('Revision 2 of 3: EmailChanged') },
  { name: 'what-if', url: aggregateUrl('user', '1', '?revision=3&compare=0.2.0'), ready: (p) => p.getByText(/fields differ/) },
  { name: 'long', url: aggregateUrl('user', 'long'), ready: (p) => p.getByText('100 of 2500 events read') },
  { name: 'rejected', url: aggregateUrl('hostile', 'refused'), ready: (p) => p.getByText('The reducer rejected the history') },
  { name: 'sign-in', url: '/ui/', token: null, ready: (p) => p.getByLabel('Access token') },
];

let browser;
before(async () => { browser = await launch(); });
after(() => browser?.close());

for (const width of [1280, 390]) {
  for (const view of VIEWS) {
    test(`${view.name} at ${width} px: no serious or critical axe violation`, async () => {
      // The page's policy blocks inline scripts, so axe goes in through the
      // DevTools protocol (evaluate), which the policy does not govern.
      const { page } = await openPage(browser, { width, ...(view.token === null ? { token: null } : {}) });
      await page.goto(view.url);
      await view.ready(page).waitFor();
      await shot(page, view.name);
      await page.evaluate(AXE);
      const { violations } = await page.evaluate(() => window.axe.run(document, {
        runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice'] },
      }));
      const bad = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
        .map((v) => `${v.impact} ${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).slice(0, 5).join('; ')})`);
      assert.deepEqual(bad, []);
    });
  }
}
