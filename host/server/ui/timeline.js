// An aggregate's events as a list, newest or oldest first, optionally only those
// of matching event types. It loads a page at a time on request, and reads at most
// MAX_SCAN events per request, so a 100,000-event history never freezes the page.

import { brief, h, storedAt, utc } from './dom.js';

const PAGE = 100;
const MAX_SCAN = 2000;

export class Timeline {
  /**
   * `load(from, to)`: the events with revisions from..to, oldest first.
   * `link(revision)`: the URL of the aggregate at a revision.
   */
  constructor({ load, link }) {
    Object.assign(this, { load, link });
    this.latest = 0;
    this.current = null;
    this.items = new Map(); // revision -> <li>
    this.seenTypes = new Set();
    this.build();
  }

  build() {
    this.order = h('select', { id: 'order' },
      h('option', { value: 'newest' }, 'Newest first'), h('option', { value: 'oldest' }, 'Oldest first'));
    this.filter = h('input', { id: 'filter', type: 'search', list: 'event-types', autocomplete: 'off', spellcheck: 'false' });
    this.types = h('datalist', { id: 'event-types' });
    this.list = h('ol', { class: 'timeline' });
    this.status = h('p', { role: 'status', class: 'muted' });
    this.more = h('button', { type: 'button', onclick: () => this.loadMore() }, 'Load more');
    this.order.addEventListener('change', () => this.reset());
    const form = h('form', { class: 'inline', 'aria-label': 'Timeline options' },
      h('label', { for: 'order' }, 'Order'), this.order,
      h('label', { for: 'filter' }, 'Event type'), this.filter, this.types, h('button', {}, 'Filter'));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.reset();
    });
    this.el = h('section', { class: 'timeline-panel', 'aria-labelledby': 'timeline-h' },
      h('h2', { id: 'timeline-h' }, 'Timeline'), form, this.list, this.more, this.status);
  }

  /** Starts again from the newest (or oldest) event, with the current filter. */
  reset(latest = this.latest) {
    this.latest = latest;
    this.seq = (this.seq ?? 0) + 1;
    this.items.clear();
    this.list.replaceChildren();
    this.next = this.order.value === 'newest' ? latest : 1; // the next revision to read
    this.scanned = 0;
    return this.loadMore();
  }

  get done() {
    return this.order.value === 'newest' ? this.next < 1 : this.next > this.latest;
  }

  matches(event) {
    const wanted = this.filter.value.trim().toLowerCase();
    return !wanted || event.event_type.toLowerCase().includes(wanted);
  }

  /** Reads pages until a page's worth matched, MAX_SCAN were read, or none are left. */
  async loadMore() {
    const seq = this.seq;
    const newest = this.order.value === 'newest';
    this.more.disabled = true;
    this.status.textContent = 'Loading events…';
    let shown = 0;
    let scanned = 0;
    try {
      while (!this.done && shown < PAGE && scanned < MAX_SCAN) {
        const [from, to] = newest ? [Math.max(1, this.next - PAGE + 1), this.next] : [this.next, Math.min(this.latest, this.next + PAGE - 1)];
        const events = await this.load(from, to);
        if (seq !== this.seq) return;
        this.next = newest ? from - 1 : to + 1;
        scanned += to - from + 1;
        const kept = (newest ? events.reverse() : events).filter((e) => this.matches(e));
        this.list.append(...kept.map((e) => this.item(e)));
        shown += kept.length;
        for (const e of events) this.seenTypes.add(e.event_type);
      }
    } catch (err) {
      if (seq === this.seq) this.status.textContent = `Could not load events: ${err.message}`;
      this.more.disabled = false;
      return;
    }
    this.scanned += scanned;
    this.types.replaceChildren(...[...this.seenTypes].sort().map((t) => h('option', { value: t })));
    this.more.disabled = false;
    this.more.hidden = this.done;
    const filtered = this.filter.value.trim() ? `, ${this.list.children.length} matching` : '';
    this.status.textContent = `${this.scanned} of ${this.latest} events read${filtered}${this.done ? '' : ': load more for the rest'}.`;
  }

  item(e) {
    const li = h('li', {},
      h('a', { href: this.link(e.revision) },
        h('span', { class: 'rev' }, `#${e.revision}`), ' ',
        h('strong', {}, e.event_type), ' ',
        h('span', { class: 'muted' }, utc(storedAt(e.position)))),
      h('code', { class: 'preview' }, brief(e.data)));
    this.items.set(e.revision, li);
    if (e.revision === this.current) li.setAttribute('aria-current', 'true');
    return li;
  }

  /** Marks the event shown. */
  mark(revision) {
    this.items.get(this.current)?.removeAttribute('aria-current');
    this.current = revision;
    this.items.get(revision)?.setAttribute('aria-current', 'true');
  }

  /** An event that just arrived (live): at the top when newest first, else at the end
   * once everything before it is listed. */
  arrived(e) {
    this.latest = Math.max(this.latest, e.revision);
    if (this.items.has(e.revision) || !this.matches(e)) return;
    if (this.order.value === 'newest') this.list.prepend(this.item(e));
    else if (this.next === e.revision) {
      this.list.append(this.item(e));
      this.next += 1;
    }
  }
}
