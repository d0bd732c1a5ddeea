// One aggregate, in time: a scrubber over its revisions and, at each, the event,
// the state after it (replayed through the active reducer), what the event changed,
// and optionally the state under another reducer version beside it (what-if).
// Its URL says where it is (`?revision=N` or `?as_of=`, and `&compare=`), so a link
// opens the same view cold. It can follow the aggregate live.

import { get, paths } from '../api.js';
import { brief, facts, h, jsonView, storedAt, utc } from '../dom.js';
import { changedPaths, diff, equal } from '../diff.js';
import { errorBox, explain, failureBox, isReducerFailure } from '../errors.js';
import { Follower } from '../live.js';
import { links, title } from '../nav.js';
import { Timeline } from '../timeline.js';

/** How many states and events are kept for going back and forth. */
const KEEP_STATES = 400;
const KEEP_EVENTS = 2000;
/** How long the scrubber rests on a revision before it is loaded (while dragging). */
const SCRUB_REST_MS = 120;

export class AggregateView {
  constructor(main, type, id) {
    Object.assign(this, { main, type, id });
    this.latest = 0;
    this.revision = null;
    this.asOf = null;
    this.compare = '';
    this.versions = [];
    this.states = new Map(); // `${reducer}@${revision}` -> promise of {state, reducer}
    this.events = new Map(); // revision -> event
    this.seq = 0; // the latest position asked for; older answers are dropped
  }

  async start(url) {
    const heading = () => h('h1', {}, h('span', { class: 'muted' }, `${this.type} `), this.id);
    title(`${this.type} ${this.id}`);
    this.main.replaceChildren(heading(), h('p', { role: 'status' }, 'Loading…'));
    let versions;
    try {
      const [summary, plugins] = await Promise.all([
        get(paths.aggregate(this.type, this.id)),
        get(paths.plugins(this.type)).catch(() => ({ data: [] })),
      ]);
      this.latest = summary.data.revision;
      versions = plugins.data;
    } catch (err) {
      const again = () => this.start(new URL(location.href));
      this.main.replaceChildren(heading(), errorBox(err, { onRetry: again, onSignedIn: again }));
      return;
    }
    this.versions = versions;
    this.activeLabel = label(versions.find((v) => v.active));
    this.build(heading());
    this.timeline.reset(this.latest);
    this.update(url);
  }

  dispose() {
    this.seq++;
    this.follower?.stop();
    clearTimeout(this.scrubTimer);
  }

  /** Shows what the URL says (a cold open, a link inside the page, back and forward). */
  update(url) {
    const p = url.searchParams;
    this.setCompare(p.get('compare') ?? '');
    if (p.get('as_of')) return this.showAsOf(p.get('as_of'));
    const r = Number(p.get('revision'));
    return this.show(Number.isInteger(r) && r >= 1 ? Math.min(r, this.latest) : this.latest);
  }

  /** Moves to a revision: the URL follows (a new history entry with `push`). */
  go(revision, { push = false } = {}) {
    const r = Math.min(Math.max(1, revision), this.latest);
    history[push ? 'pushState' : 'replaceState'](null, '', this.link({ revision: r }));
    return this.show(r);
  }

  link(params) {
    return links.aggregate(this.type, this.id, { ...params, compare: this.compare });
  }

  // --- The page --------------------------------------------------------------------

  build(heading) {
    this.timeline = new Timeline({
      load: (from, to) => this.loadEvents(from, to),
      link: (revision) => this.link({ revision }),
    });
    this.summary = h('p', { class: 'muted' });
    this.position = h('p', { class: 'position', role: 'status' });
    this.eventBody = h('div');
    this.changesBody = h('div');
    this.stateBody = h('div');
    this.stateHeading = h('h2', { id: 'state-h' }, 'State');
    this.main.replaceChildren(
      h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' },
        h('a', { href: links.types() }, 'Types'), ' / ', h('a', { href: links.type(this.type) }, this.type)),
      heading, this.summary, this.liveBar(), this.controls(),
      h('div', { class: 'aggregate' },
        h('div', { class: 'panels' },
          this.position,
          h('section', { class: 'panel', 'aria-labelledby': 'event-h' }, h('h2', { id: 'event-h' }, 'Event'), this.eventBody),
          h('section', { class: 'panel', 'aria-labelledby': 'changes-h' },
            h('h2', { id: 'changes-h' }, 'What it changed'), this.changesBody),
          h('section', { class: 'panel', 'aria-labelledby': 'state-h' },
            this.stateHeading, this.compareField(), this.stateBody)),
        this.timeline.el));
  }

  controls() {
    const step = (before, text, after, to) => h('button', { type: 'button', onclick: () => this.go(to()) },
      before && h('span', { 'aria-hidden': 'true' }, `${before} `), text, after && h('span', { 'aria-hidden': 'true' }, ` ${after}`));
    this.scrubber = h('input', { id: 'scrubber', type: 'range', min: 1, step: 1 });
    this.scrubber.addEventListener('input', () => {
      const r = Number(this.scrubber.value);
      this.scrubber.setAttribute('aria-valuetext', `Revision ${r} of ${this.latest}`);
      clearTimeout(this.scrubTimer);
      this.scrubTimer = setTimeout(() => this.go(r), SCRUB_REST_MS);
    });
    this.jump = h('input', { id: 'jump', type: 'number', min: 1, class: 'narrow', required: true });
    const jump = h('form', { class: 'inline', 'aria-label': 'Go to a revision' },
      h('label', { for: 'jump' }, 'Revision'), this.jump, h('button', {}, 'Go'));
    jump.addEventListener('submit', (e) => {
      e.preventDefault();
      this.go(Number(this.jump.value), { push: true });
    });
    this.asOfInput = h('input', { id: 'as-of', type: 'datetime-local', step: 1, required: true });
    const asOf = h('form', { class: 'inline', 'aria-label': 'Go to an instant' },
      h('label', { for: 'as-of' }, 'As of (UTC)'), this.asOfInput, h('button', {}, 'Show'));
    asOf.addEventListener('submit', (e) => {
      e.preventDefault();
      const instant = new Date(`${this.asOfInput.value}Z`);
      if (Number.isNaN(instant.getTime())) return;
      history.pushState(null, '', this.link({ as_of: instant.toISOString() }));
      this.showAsOf(instant.toISOString());
    });
    const box = h('section', { class: 'controls', 'aria-label': 'Time travel' },
      h('div', { class: 'scrub' },
        h('label', { for: 'scrubber' }, 'Scrub'),
        step('«', 'First', null, () => 1),
        step('‹', 'Previous', null, () => this.revision - 1),
        this.scrubber,
        step(null, 'Next', '›', () => this.revision + 1),
        step(null, 'Latest', '»', () => this.latest)),
      h('div', { class: 'toolbar' }, jump, asOf));
    // The keys work on the step buttons too (the scrubber has them natively).
    box.addEventListener('keydown', (e) => {
      if (e.target.matches('input, select, textarea') || e.altKey || e.ctrlKey || e.metaKey) return;
      const to = { ArrowLeft: this.revision - 1, ArrowRight: this.revision + 1, Home: 1, End: this.latest }[e.key];
      if (to === undefined) return;
      e.preventDefault();
      this.go(to);
    });
    return box;
  }

  compareField() {
    this.compareSelect = h('select', { id: 'compare' },
      h('option', { value: '' }, 'No comparison'),
      this.versions.map((v) => h('option', { value: v.digest }, `${label(v)}${v.active ? ' (active)' : ''}`)));
    this.compareSelect.addEventListener('change', () => {
      this.setCompare(this.compareSelect.value);
      const where = this.asOf ? { as_of: this.asOf } : { revision: this.revision };
      history.replaceState(null, '', this.link(where));
      this.show(this.revision, { asOf: this.asOf });
    });
    return h('div', { class: 'inline' },
      h('label', { for: 'compare' }, 'Compare with reducer'), this.compareSelect);
  }

  /** `wanted`: a digest or a version, as the URL may say either. */
  setCompare(wanted) {
    const found = this.versions.find((v) => v.digest === wanted || v.version === wanted);
    this.compare = found?.digest ?? wanted;
    if (this.compareSelect) this.compareSelect.value = found ? found.digest : '';
  }

  liveBar() {
    this.followButton = h('button', { type: 'button', onclick: () => this.toggleFollow() }, 'Follow live');
    this.liveStatus = h('span', { role: 'status', class: 'muted' });
    this.curl = h('code', { id: 'curl' });
    this.copyStatus = h('span', { role: 'status', class: 'muted' });
    this.follower = new Follower({
      url: (after) => paths.follow(this.type, this.id, { state: true, after }),
      on: {
        event: (e) => this.arrivedEvent(e),
        state: ({ revision, state }) => this.arrivedState(revision, state),
        'caught-up': () => { this.liveStatus.textContent = 'Live: new events appear as they are appended.'; },
      },
      status: (text, state) => {
        this.liveStatus.textContent = text;
        this.followButton.textContent = state === 'live' ? 'Pause' : state === 'paused' ? 'Resume' : 'Follow live';
      },
      probe: () => get(paths.aggregate(this.type, this.id)),
    });
    return h('div', { class: 'toolbar' },
      this.followButton, this.liveStatus,
      h('details', { class: 'curl' },
        h('summary', {}, 'curl for this state'),
        this.curl, ' ',
        h('button', { type: 'button', onclick: () => this.copyCurl() }, 'Copy'), ' ', this.copyStatus));
  }

  // --- Positions -------------------------------------------------------------------

  /** Shows a revision: its event, the state after it, and what changed. */
  async show(revision, { asOf = null } = {}) {
    const seq = ++this.seq;
    this.revision = revision;
    this.asOf = asOf;
    this.syncControls();
    title(`${this.type} ${this.id} at ${asOf ?? `revision ${revision}`}`);
    this.position.textContent = `Loading revision ${revision}…`;
    const [event, after, before, other] = await Promise.all([
      this.eventAt(revision),
      this.stateAt(revision),
      revision > 1 ? this.stateAt(revision - 1) : Promise.resolve({ state: undefined }),
      this.compare ? this.stateAt(revision, this.compare) : Promise.resolve(null),
    ].map((p) => p.then((value) => ({ value }), (error) => ({ error }))));
    if (seq !== this.seq) return;
    const e = event.value;
    const when = asOf ? `As of ${asOf}: revision ${revision} of ${this.latest}, the last event stored by then` : `Revision ${revision} of ${this.latest}`;
    this.position.textContent = e ? `${when}: ${e.event_type}, stored ${utc(storedAt(e.position))}.` : `${when}.`;
    this.eventBody.replaceChildren(event.error ? this.problem(event.error) : eventFacts(e));
    this.stateHeading.textContent = `State after revision ${revision}`;
    this.changesBody.replaceChildren(this.changes(before, after));
    this.stateBody.replaceChildren(this.compare ? this.whatIf(after, other) : this.stateOf(after));
  }

  /** Shows the last revision stored at or before an instant. */
  async showAsOf(asOf) {
    const seq = ++this.seq;
    this.asOf = asOf;
    this.asOfInput.value = asOf.slice(0, 19);
    this.position.textContent = `Finding the last event stored at or before ${asOf}…`;
    let revision;
    try {
      revision = await this.revisionAsOf(asOf);
    } catch (err) {
      if (seq === this.seq) this.position.textContent = `${explain(err).heading}. ${explain(err).text}`;
      return;
    }
    if (seq !== this.seq) return;
    if (revision > 0) return this.show(revision, { asOf });
    this.position.textContent = `Nothing was stored at or before ${asOf}: the first event came later.`;
    for (const body of [this.eventBody, this.changesBody, this.stateBody]) body.replaceChildren();
  }

  /** The last revision stored at or before `asOf`, by a binary search of single-event
   * reads (a few dozen requests for millions of events; no replay). */
  async revisionAsOf(asOf) {
    let [low, high] = [0, this.latest];
    while (low < high) {
      const mid = Math.ceil((low + high) / 2);
      const { data } = await get(paths.events(this.type, this.id, { from_revision: mid, to_revision: mid, as_of: asOf, limit: 1 }));
      if (data.events.length > 0) low = mid;
      else high = mid - 1;
    }
    return low;
  }

  syncControls() {
    const r = this.revision;
    this.summary.textContent = `${this.latest} events.`;
    this.scrubber.max = this.latest;
    this.scrubber.value = r;
    this.scrubber.setAttribute('aria-valuetext', `Revision ${r} of ${this.latest}`);
    this.jump.max = this.latest;
    this.jump.value = r;
    if (!this.asOf) this.asOfInput.value = '';
    this.timeline.mark(r);
    this.curl.textContent = this.curlCommand();
    this.copyStatus.textContent = '';
  }

  // --- What is shown ---------------------------------------------------------------

  problem(err) {
    return isReducerFailure(err)
      ? failureBox(err, (r) => this.go(r, { push: true }))
      : errorBox(err, { onRetry: () => this.show(this.revision, { asOf: this.asOf }), onSignedIn: () => this.start(new URL(location.href)) });
  }

  changes(before, after) {
    if (after.error) return h('p', {}, 'Nothing to compare: the state after this event could not be made (see below).');
    if (before.error) return h('p', {}, `The state before this event could not be made: ${before.error.message}`);
    return changesTable(diff(before.value.state, after.value.state), ['Before', 'After'], 'What the event changed');
  }

  stateOf(result) {
    if (result.error) return this.problem(result.error);
    return h('div', {},
      h('p', { class: 'muted' }, `Replayed through ${result.value.reducer ?? 'the active reducer'}.`),
      jsonView(result.value.state));
  }

  /** The state under the active reducer beside the one under `compare`, differences marked. */
  whatIf(active, other) {
    if (active.error || other.error) {
      return h('div', { class: 'what-if' },
        h('figure', {}, h('figcaption', {}, 'Active reducer'), this.stateOf(active)),
        h('figure', {}, h('figcaption', {}, 'Compared'), this.stateOf(other)));
    }
    const changes = diff(active.value.state, other.value.state);
    const marks = changedPaths(changes);
    const [a, b] = [active.value.reducer ?? 'active', other.value.reducer ?? 'compared'];
    return h('div', {},
      h('p', { class: changes.length ? 'differs' : 'agrees' },
        changes.length ? `${changes.length} ${changes.length === 1 ? 'field differs' : 'fields differ'} between ${a} and ${b}.`
          : `${a} and ${b} agree at this revision.`),
      h('div', { class: 'what-if' },
        h('figure', {}, h('figcaption', {}, `${a} (active)`), jsonView(active.value.state, marks)),
        h('figure', {}, h('figcaption', {}, b), jsonView(other.value.state, marks))),
      changes.length > 0 && changesTable(changes, [a, b], 'Differences between the reducers',
        { added: 'compared only', removed: 'active only', changed: 'differs' }));
  }

  // --- Data ------------------------------------------------------------------------

  /** The state after a revision, through `reducer` (a digest) or the active one.
   * Kept, like a reducer's rejection (the same history is rejected again). */
  stateAt(revision, reducer = '') {
    const key = `${reducer}@${revision}`;
    let state = this.states.get(key);
    if (!state) {
      state = get(paths.state(this.type, this.id, { at_revision: revision, reducer })).then(({ data, headers }) => {
        const made = headers.get('streamfold-reducer');
        if (!reducer && made) this.activeLabel = made;
        return { state: data, reducer: made };
      });
      keep(this.states, key, state, KEEP_STATES);
      state.catch((err) => isReducerFailure(err) || this.states.delete(key));
    }
    return state;
  }

  async eventAt(revision) {
    const [event] = this.events.has(revision) ? [this.events.get(revision)] : await this.loadEvents(revision, revision);
    if (!event) throw new Error(`event #${revision} is not there`);
    return event;
  }

  async loadEvents(from, to) {
    const { data } = await get(paths.events(this.type, this.id, { from_revision: from, to_revision: to, limit: to - from + 1 }));
    for (const e of data.events) keep(this.events, e.revision, e, KEEP_EVENTS);
    return data.events;
  }

  // --- Live ------------------------------------------------------------------------

  async toggleFollow() {
    if (this.follower.following) return this.follower.pause();
    if (this.follower.last) return this.follower.start();
    try {
      this.follower.start((await this.eventAt(this.latest)).position);
    } catch (err) {
      this.liveStatus.textContent = `${explain(err).heading}. ${explain(err).text}`;
    }
  }

  arrivedEvent(e) {
    keep(this.events, e.revision, e, KEEP_EVENTS);
    // At the latest revision, the view moves on with the new one once its state is here.
    if (this.revision === this.latest && !this.asOf) this.pendingHead = e.revision;
    this.latest = Math.max(this.latest, e.revision);
    this.timeline.arrived(e);
    this.summary.textContent = `${this.latest} events.`;
    this.scrubber.max = this.latest;
    this.jump.max = this.latest;
  }

  async arrivedState(revision, state) {
    if (this.pendingHead === revision) {
      this.pendingHead = null;
      keep(this.states, `@${revision}`, Promise.resolve({ state, reducer: this.activeLabel }), KEEP_STATES);
      this.go(revision);
      return;
    }
    // The stream's opening state, or another reducer activated: if it is not what
    // was shown, the states kept may be another reducer's.
    const known = await this.states.get(`@${revision}`)?.catch(() => null);
    if (known && equal(known.state, state)) return;
    this.states.clear();
    if (this.revision === revision && !this.asOf) this.show(revision);
  }

  // --- curl --------------------------------------------------------------------------

  curlCommand() {
    const where = this.asOf ? { as_of: this.asOf } : { at_revision: this.revision };
    const url = new URL(paths.state(this.type, this.id, { ...where, reducer: this.compare }), location.origin);
    // A server without tokens ignores the header: one command works with both.
    return `curl -sS ${shellQuote(url.href)} -H "Authorization: Bearer $STREAMFOLD_TOKEN"`;
  }

  async copyCurl() {
    try {
      await navigator.clipboard.writeText(this.curl.textContent);
      this.copyStatus.textContent = 'Copied.';
    } catch {
      getSelection().selectAllChildren(this.curl);
      this.copyStatus.textContent = 'Selected: copy it with the keyboard (the clipboard is not available here).';
    }
  }
}

const label = (v) => (v ? `${v.name}@${v.version}` : null);

const shellQuote = (s) => `'${s.replaceAll("'", "'\\''")}'`;

/** Keeps a value in a Map used as a small cache: the oldest entry goes first. */
function keep(map, key, value, max) {
  map.delete(key);
  map.set(key, value);
  if (map.size > max) map.delete(map.keys().next().value);
}

function eventFacts(e) {
  return h('div', {},
    facts([
      ['Revision', String(e.revision)],
      ['Event type', e.event_type],
      ['Time (as written)', e.timestamp],
      ['Stored', utc(storedAt(e.position))],
      ['Event id', e.event_id],
      ['Schema version', e.version],
      ['Position', e.position],
    ]),
    h('h3', {}, 'Data'),
    jsonView(e.data));
}

/** The changes as a table: field (a JSON Pointer), kind (named by `kinds`), and the
 * two values, under the headings `a` and `b`. */
function changesTable(changes, [a, b], caption, kinds = { added: 'added', removed: 'removed', changed: 'changed' }) {
  if (changes.length === 0) return h('p', {}, 'No field changed.');
  return h('table', { class: 'diff' },
    h('caption', { class: 'sr-only' }, caption),
    h('thead', {}, h('tr', {}, ['Field', 'Change', a, b].map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, changes.map((c) => h('tr', { class: c.kind },
      h('th', { scope: 'row' }, h('code', {}, c.path || '(the whole state)')),
      h('td', { class: 'kind' }, kinds[c.kind]),
      h('td', {}, h('code', {}, brief(c.before, 300))),
      h('td', {}, h('code', {}, brief(c.after, 300)))))));
}
