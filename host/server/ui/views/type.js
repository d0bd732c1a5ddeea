// One aggregate type: its aggregates (by id prefix, a page at a time), its reducers
// (versions, the active one, what was active when, and a verify of a candidate),
// its durable subscription groups (views/groups.js), and its category feed, live.

import { get, paths, request } from '../api.js';
import { brief, h, storedAt, utc } from '../dom.js';
import { errorBox, explain } from '../errors.js';
import { Follower } from '../live.js';
import { links, title } from '../nav.js';
import { GroupsSection } from './groups.js';

/** Ids asked for per request, and how many a "more" click shows at least. */
const IDS_PAGE = 100;
const IDS_WANTED = 50;
/** Live feed rows kept on the page. */
const FEED_ROWS = 200;

export class TypeView {
  constructor(main, type) {
    Object.assign(this, { main, type });
  }

  start() {
    const retry = () => this.start();
    title(`Type ${this.type}`);
    this.main.replaceChildren(
      h('h1', {}, h('span', { class: 'muted' }, 'Type '), this.type),
      this.idsSection(), this.reducersSection(retry),
      new GroupsSection(this.type, { onSignedIn: retry }).element, this.feedSection());
    this.loadIds(true);
  }

  dispose() {
    this.feed?.stop();
  }

  // --- Aggregates ------------------------------------------------------------------

  idsSection() {
    this.prefix = h('input', { id: 'prefix', name: 'prefix', autocomplete: 'off', spellcheck: 'false' });
    this.ids = h('ul', { class: 'ids' });
    this.idsStatus = h('p', { role: 'status', class: 'muted' });
    this.idsError = h('div');
    this.more = h('button', { type: 'button', hidden: true, onclick: () => this.loadIds(false) }, 'More ids');
    const form = h('form', { class: 'inline', role: 'search', 'aria-label': 'Aggregate ids' },
      h('label', { for: 'prefix' }, 'Id starts with'), this.prefix, h('button', {}, 'Search'));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.loadIds(true);
    });
    return h('section', { 'aria-labelledby': 'ids-h' },
      h('h2', { id: 'ids-h' }, 'Aggregates'), form, this.idsError, this.ids, this.more, this.idsStatus);
  }

  /** The next ids (from the start with `reset`): a page of the keyspace walk can be
   * empty, so it goes on until a few are found or the walk ends. */
  async loadIds(reset) {
    const seq = (this.idsSeq = (this.idsSeq ?? 0) + 1);
    if (reset) {
      this.cursor = null;
      this.ids.replaceChildren();
    }
    this.idsStatus.textContent = 'Loading ids…';
    this.idsError.replaceChildren();
    let found = 0;
    try {
      for (let calls = 0; calls < 20 && found < IDS_WANTED; calls++) {
        const params = { prefix: this.prefix.value, cursor: this.cursor, limit: IDS_PAGE };
        const { data } = await get(paths.ids(this.type, params));
        if (seq !== this.idsSeq) return;
        this.ids.append(...data.ids.map((id) => h('li', {}, h('a', { href: links.aggregate(this.type, id) }, id))));
        found += data.ids.length;
        this.cursor = data.next_cursor;
        if (!this.cursor) break;
      }
    } catch (err) {
      if (seq !== this.idsSeq) return;
      this.idsError.replaceChildren(errorBox(err, { onRetry: () => this.loadIds(reset), onSignedIn: () => this.start() }));
    }
    const shown = this.ids.children.length;
    this.more.hidden = !this.cursor;
    this.idsStatus.textContent = shown === 0 && !this.cursor
      ? 'No aggregates found.'
      : `${shown} ids shown${this.cursor ? '' : ', all there are'}.`;
  }

  // --- Reducers --------------------------------------------------------------------

  reducersSection(retry) {
    const body = h('div', {}, h('p', { role: 'status', class: 'muted' }, 'Loading the reducers…'));
    Promise.all([get(paths.plugins(this.type)), get(paths.activations(this.type))]).then(
      ([{ data: versions }, { data: activations }]) => body.replaceChildren(
        versionsTable(versions), h('h3', {}, 'What was active when'), activationList(activations)),
      (err) => body.replaceChildren(errorBox(err, { onRetry: retry, onSignedIn: retry })));
    return h('section', { 'aria-labelledby': 'reducers-h' },
      h('h2', { id: 'reducers-h' }, 'Reducers'), body, this.verifyForm());
  }

  verifyForm() {
    const file = h('input', { id: 'wasm', type: 'file', accept: '.wasm,application/wasm', required: true });
    const sample = h('input', { id: 'sample', type: 'number', min: 1, value: '100', class: 'narrow' });
    const out = h('div', { 'aria-live': 'polite' });
    const form = h('form', { class: 'inline', 'aria-labelledby': 'verify-h' },
      h('label', { for: 'wasm' }, 'Component (.wasm)'), file,
      h('label', { for: 'sample' }, 'Aggregates to compare'), sample,
      h('button', {}, 'Verify'));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      out.replaceChildren(h('p', { role: 'status' }, 'Replaying through both reducers…'));
      try {
        const { data } = await request('POST', paths.verify(this.type, sample.value), {
          body: file.files[0], headers: { 'Content-Type': 'application/wasm' },
        });
        out.replaceChildren(verifyReport(data, this.type));
      } catch (err) {
        const { heading, text } = explain(err);
        const said = err.status === 401 || err.status === 403
          ? `Not allowed here: ${err.problem.detail ?? ''} A browser session only reads: verify with the command line instead (streamfold plugin verify FILE --type ${this.type}), or on a server without tokens.`
          : `${heading}. ${text}`;
        out.replaceChildren(h('div', { class: 'problem', role: 'alert' }, h('p', {}, said)));
      }
    });
    return h('section', { class: 'sub' },
      h('h3', { id: 'verify-h' }, 'Verify a candidate version'),
      h('p', { class: 'muted' }, 'Replays existing aggregates through the candidate and the active reducer and compares; activates nothing.'),
      form, out);
  }

  // --- Live feed -------------------------------------------------------------------

  feedSection() {
    this.feedList = h('ol', { class: 'feed', reversed: true });
    this.feedStatus = h('p', { role: 'status', class: 'muted' }, 'Not following.');
    this.feedButton = h('button', { type: 'button', onclick: () => this.toggleFeed() }, 'Follow live');
    this.feed = new Follower({
      url: (after) => paths.followCategory(this.type, { after }),
      on: { event: (e) => this.arrived(e) },
      status: (text, state) => {
        this.feedStatus.textContent = text;
        this.feedButton.textContent = state === 'live' ? 'Pause' : state === 'paused' ? 'Resume' : 'Follow live';
      },
      probe: () => get(paths.ids(this.type, { limit: 1 })),
    });
    return h('section', { 'aria-labelledby': 'feed-h' },
      h('h2', { id: 'feed-h' }, 'Live feed'),
      h('p', { class: 'muted' }, 'Events of every aggregate of this type, as they are appended.'),
      h('div', { class: 'toolbar' }, this.feedButton, this.feedStatus), this.feedList);
  }

  async toggleFeed() {
    if (this.feed.following) return this.feed.pause();
    if (this.feed.last) return this.feed.start();
    // From now: the server's clock (its Date header) as a position, one per partition.
    try {
      const { data, headers } = await get(paths.types());
      const partitions = data.types.find((t) => t.type === this.type)?.partitions ?? 1;
      const now = Date.parse(headers.get('date')) || Date.now();
      this.feed.start(Array(partitions).fill(now).join(','));
    } catch (err) {
      this.feedStatus.textContent = `${explain(err).heading}. ${explain(err).text}`;
    }
  }

  arrived(e) {
    const link = links.aggregate(e.aggregate_type, e.aggregate_id, { revision: e.revision });
    this.feedList.prepend(h('li', {},
      h('a', { href: link }, `${e.aggregate_id} #${e.revision}`), ' ',
      h('strong', {}, e.event_type), ' ',
      h('span', { class: 'muted' }, utc(storedAt(e.position))), ' ',
      h('code', {}, brief(e.data, 120))));
    while (this.feedList.children.length > FEED_ROWS) this.feedList.lastChild.remove();
  }
}

function versionsTable(versions) {
  if (versions.length === 0) return h('p', {}, 'No reducer is registered for this type.');
  return h('table', {},
    h('caption', { class: 'sr-only' }, 'Registered versions'),
    h('thead', {}, h('tr', {}, ['Version', 'Name', 'Digest', 'Handles', 'Registered', 'Status']
      .map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, versions.map((v) => h('tr', { class: v.active ? 'active' : null },
      h('th', { scope: 'row' }, v.version),
      h('td', {}, v.name),
      h('td', {}, h('code', { title: v.digest }, v.digest.slice(0, 12))),
      h('td', {}, v.handles.length ? v.handles.join(', ') : 'all events'),
      h('td', {}, v.registered_at),
      h('td', {}, v.active ? h('strong', {}, 'active') : '')))));
}

function activationList(activations) {
  if (activations.length === 0) return h('p', {}, 'No activations yet.');
  return h('ol', { class: 'plain' }, activations.map((a) => h('li', {},
    h('time', {}, a.activated_at), `: ${a.name}@${a.version} `,
    h('code', { title: a.digest }, a.digest.slice(0, 12)))));
}

/** A verify report, readably: the counts, then each difference and failure. */
function verifyReport(r, type) {
  const ok = r.differed.length === 0 && r.failed.length === 0 && r.keeps_state_across_aggregates.length === 0;
  const label = (p) => (p ? `${p.name}@${p.version}` : 'no active reducer');
  const row = (id, ...cells) => h('tr', {},
    h('th', { scope: 'row' }, h('a', { href: links.aggregate(type, id) }, id)), cells.map((c) => h('td', {}, c)));
  return h('div', { class: ok ? 'report ok' : 'report differs' },
    h('p', {}, h('strong', {}, ok ? 'Passed: ' : 'Differences found: '),
      `${label(r.candidate)} against ${label(r.active)}: ${r.checked} aggregates checked, ${r.agreed} agree, `,
      `${r.differed.length} differ, ${r.failed.length} fail in the candidate, `,
      `${r.keeps_state_across_aggregates.length} show it keeps state across aggregates (${r.elapsed_ms} ms).`),
    r.differed.length > 0 && h('table', {},
      h('caption', {}, 'Differences (the first differing field of each aggregate)'),
      h('thead', {}, h('tr', {}, ['Aggregate', 'Field', 'Active', 'Candidate'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, r.differed.map((d) => row(d.aggregate_id, h('code', {}, d.path || '(whole state)'),
        h('code', {}, brief(d.active)), h('code', {}, brief(d.candidate)))))),
    r.failed.length > 0 && h('table', {},
      h('caption', {}, 'Failures in the candidate'),
      h('thead', {}, h('tr', {}, ['Aggregate', 'Error'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, r.failed.map((f) => row(f.aggregate_id, f.error)))));
}
