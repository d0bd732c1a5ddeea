// The data every scenario may read (tests/browser/run registers the reducers first):
// - user 1, three events: created as Ann, the email changed, the name changed to Annie;
// - user `long`, 2,500 events: the timeline pages through it;
// - hostile `refused`: an event the hostile reducer counts, then one it rejects.
// Scenarios that append make aggregates of their own (lib.unique).

import { append } from './lib.mjs';

// One append each, each stored in a later millisecond than the one before, so that
// every revision of user 1 has an instant (`as_of`) of its own.
for (const event of [
  ['UserCreated', { id: 1, name: 'Ann', email: 'ann@example.com', timestamp: '2026-11-26T10:00:00Z' }],
  ['EmailChanged', { email: 'ann@example.org', timestamp: '2026-11-26T11:00:00Z' }],
  ['NameChanged', { name: 'Annie' }],
]) {
  const { positions } = await append('user', '1', [event]);
  const stored = Number(positions[0].split('-')[0]);
  while (Date.now() <= stored) await new Promise((resolve) => setTimeout(resolve, 1));
}

await append('user', 'long', [['UserCreated', { id: 'long', name: 'L0', email: 'l@example.com', timestamp: 't0' }]]);
for (let batch = 0; batch < 3; batch++) {
  const size = batch < 2 ? 1000 : 499;
  await append('user', 'long', Array.from({ length: size }, (_, i) => ['NameChanged', { name: `L${batch * 1000 + i + 1}` }]));
}
await append('hostile', 'refused', [['Counted', {}], ['Refuse', {}]]);
console.log('seeded user 1 (3 events), user long (2,500 events) and hostile refused (2 events)');
