// The start page: the aggregate types, those with events and those with reducers.

import { get, paths } from '../api.js';
import { h } from '../dom.js';
import { errorBox } from '../errors.js';
import { links, title } from '../nav.js';

export class TypesView {
  constructor(main) {
    this.main = main;
  }

  async start() {
    title('Aggregate types');
    this.main.replaceChildren(h('h1', {}, 'Aggregate types'), h('p', { role: 'status' }, 'Loading the types…'));
    let types;
    try {
      ({ types } = (await get(paths.types())).data);
    } catch (err) {
      this.main.replaceChildren(h('h1', {}, 'Aggregate types'),
        errorBox(err, { onRetry: () => this.start(), onSignedIn: () => this.start() }));
      return;
    }
    const rows = types.map((t) => h('tr', {},
      h('th', { scope: 'row' }, h('a', { href: links.type(t.type) }, t.type)),
      h('td', {}, t.has_events ? 'yes' : 'no'),
      h('td', {}, t.partitions ?? '—'),
      h('td', {}, t.active_reducer ? `${t.active_reducer.name}@${t.active_reducer.version}` : 'none'),
      h('td', {}, String(t.reducer_versions))));
    this.main.replaceChildren(
      h('h1', {}, 'Aggregate types'),
      types.length === 0
        ? h('p', {}, 'Nothing here yet (or nothing this sign-in may see): append events or register a reducer.')
        : h('table', { class: 'types' },
          h('caption', { class: 'sr-only' }, 'The aggregate types'),
          h('thead', {}, h('tr', {}, ['Type', 'Events', 'Partitions', 'Active reducer', 'Versions']
            .map((c) => h('th', { scope: 'col' }, c)))),
          h('tbody', {}, rows)),
      h('p', { class: 'hint' }, 'Open a type to browse its aggregates, reducers and live feed, or open an aggregate by its type and id above.'));
  }
}
