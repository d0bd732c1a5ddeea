// A type's durable subscription groups: each group's settings and health (lag,
// pending, parked), its consumers with their last poll, and its parked events a
// page at a time. What workers said (a nack's reason, a consumer's name) is shown
// as text.

import { get, paths } from '../api.js';
import { h, utc } from '../dom.js';
import { errorBox } from '../errors.js';
import { links } from '../nav.js';

/** Parked events asked for per page. */
const PARKED_PAGE = 50;

/** Why an event was parked, as the server names it. */
const REASONS = {
  nacked: 'nacked by a worker',
  max_deliveries: 'delivered too often',
  trimmed: 'trimmed before it was acknowledged',
};

let sections = 0;

/** The section on a type's page; `onSignedIn` runs after a sign-in it asked for. */
export class GroupsSection {
  constructor(type, { onSignedIn } = {}) {
    Object.assign(this, { type, onSignedIn });
    this.id = `groups-${++sections}`;
    this.open = new Set(); // groups whose parked events are shown, kept over a refresh
    this.status = h('p', { role: 'status', class: 'muted' });
    this.body = h('div');
    this.refreshButton = h('button', { type: 'button', onclick: () => this.load() }, 'Refresh groups');
    this.element = h('section', { 'aria-labelledby': `${this.id}-h` },
      h('h2', { id: `${this.id}-h` }, 'Durable subscription groups'),
      h('div', { class: 'toolbar' }, this.refreshButton, this.status), this.body);
    this.load();
  }

  async load() {
    const seq = (this.seq = (this.seq ?? 0) + 1);
    this.status.textContent = 'Loading the groups…';
    this.refreshButton.disabled = true;
    let groups;
    try {
      const { data } = await get(paths.groups());
      const mine = data.groups.filter((g) => g.type === this.type);
      // The list carries each group's health; ask for it where it does not.
      groups = await Promise.all(mine.map((g) => ('pending' in g ? g
        : get(paths.group(this.type, g.group)).then((r) => r.data))));
    } catch (err) {
      if (seq !== this.seq) return;
      this.refreshButton.disabled = false;
      this.status.textContent = '';
      this.body.replaceChildren(errorBox(err, { onRetry: () => this.load(), onSignedIn: this.onSignedIn }));
      return;
    }
    if (seq !== this.seq) return;
    this.refreshButton.disabled = false;
    this.status.textContent = `Updated ${utc(Date.now())}.`;
    if (groups.length === 0) {
      this.body.replaceChildren(h('p', {}, 'No groups on this type. An admin creates one with ',
        h('code', {}, `PUT /v1/groups/${this.type}/{group}`), ' (body ', h('code', {}, '{"start":"beginning"}'), ').'));
      return;
    }
    groups.sort((a, b) => a.group.localeCompare(b.group));
    this.body.replaceChildren(...groups.map((g, i) => this.groupBlock(g, `${this.id}-${i}`)));
  }

  groupBlock(g, id) {
    const s = g.settings ?? {};
    const parked = h('div', { id: `${id}-parked` });
    const toggle = h('button', { type: 'button', 'aria-expanded': 'false', 'aria-controls': `${id}-parked` }, 'Show parked');
    const show = (on) => {
      toggle.setAttribute('aria-expanded', String(on));
      toggle.textContent = on ? 'Hide parked' : 'Show parked';
      if (on) {
        this.open.add(g.group);
        this.loadParked(g.group, parked, null);
      } else {
        this.open.delete(g.group);
        parked.replaceChildren();
      }
    };
    toggle.addEventListener('click', () => show(toggle.getAttribute('aria-expanded') !== 'true'));
    const block = h('article', { class: 'group', 'aria-labelledby': `${id}-h` },
      h('h3', { id: `${id}-h` }, h('span', { class: 'muted' }, 'Group '), g.group),
      h('dl', { class: 'stats' }, [
        ['Start', s.start],
        ['Ack timeout', duration(s.ack_timeout_ms)],
        ['Max deliveries', s.max_deliveries],
        ['Undelivered (lag)', g.undelivered ?? 'not known yet'],
        ['Pending', g.pending],
        ['Oldest pending', g.oldest_pending_ms == null ? 'none' : duration(g.oldest_pending_ms)],
        ['Parked', g.parked],
        g.replaying ? ['Replaying', g.replaying] : null,
        g.trim_held_back ? ['Trim held back', `${g.trim_held_back} events kept until acknowledged`] : null,
        ['Created', utc(g.created_at_ms)],
      ].filter(Boolean).map(([k, v]) => h('div', {}, h('dt', {}, k), h('dd', {}, String(v ?? '—'))))),
      consumersTable(g),
      h('div', { class: 'toolbar' }, toggle),
      parked);
    if (this.open.has(g.group)) show(true);
    return block;
  }

  /** A page of parked events into `box` (appended to its table after the first). */
  async loadParked(group, box, after) {
    const status = h('p', { role: 'status', class: 'muted' }, 'Loading parked events…');
    box.querySelector('.more-parked')?.remove();
    box.append(status);
    let page;
    try {
      ({ data: page } = await get(paths.parked(this.type, group, { after, limit: PARKED_PAGE })));
    } catch (err) {
      status.replaceWith(errorBox(err, {
        onRetry: () => {
          box.querySelector('.problem')?.remove();
          this.loadParked(group, box, after);
        },
        onSignedIn: this.onSignedIn,
      }));
      return;
    }
    if (!box.isConnected || !status.isConnected) return;
    status.remove();
    let tbody = box.querySelector('tbody');
    if (!tbody) {
      if (page.events.length === 0) {
        box.append(h('p', {}, 'No parked events.'));
        return;
      }
      tbody = h('tbody');
      box.append(h('table', { class: 'parked' },
        h('caption', {}, `Parked events of ${group}`),
        h('thead', {}, h('tr', {}, ['Position', 'Aggregate', 'Event type', 'Reason', 'Last error', 'Deliveries']
          .map((c) => h('th', { scope: 'col' }, c)))),
        tbody));
    }
    tbody.append(...page.events.map((e) => this.parkedRow(e)));
    if (page.next) {
      box.append(h('button', {
        type: 'button', class: 'more-parked', onclick: () => this.loadParked(group, box, page.next),
      }, 'More parked events'));
    }
  }

  parkedRow(e) {
    const ev = e.event;
    const cell = (tag, label, ...content) => h(tag, { 'data-label': label, ...(tag === 'th' ? { scope: 'row' } : {}) }, ...content);
    return h('tr', {},
      cell('th', 'Position', h('code', { title: 'partition/position' }, `${e.partition}/${e.position}`)),
      cell('td', 'Aggregate', ev
        ? h('a', { href: links.aggregate(ev.aggregate_type ?? this.type, ev.aggregate_id, { revision: ev.revision }) },
          `${ev.aggregate_id} #${ev.revision}`)
        : h('span', { class: 'muted' }, '(trimmed from the category)')),
      cell('td', 'Event type', ev ? ev.event_type : '—'),
      cell('td', 'Reason', REASONS[e.reason] ?? String(e.reason)),
      h('td', { class: 'last-error', 'data-label': 'Last error' }, e.last_error ?? h('span', { class: 'muted' }, 'none')),
      cell('td', 'Deliveries', String(e.delivery_count)));
  }
}

function consumersTable(g) {
  const consumers = g.consumers ?? [];
  if (consumers.length === 0) return h('p', { class: 'muted' }, 'No consumer has fetched yet.');
  return h('table', { class: 'consumers' },
    h('caption', {}, `Consumers of ${g.group}`),
    h('thead', {}, h('tr', {}, ['Consumer', 'Last poll', 'Idle', 'Pending']
      .map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, consumers.map((c) => h('tr', {},
      h('th', { scope: 'row' }, c.name),
      h('td', {}, h('time', { datetime: new Date(c.last_poll_ms).toISOString() }, utc(c.last_poll_ms))),
      h('td', {}, duration(c.idle_ms)),
      h('td', {}, String(c.pending))))));
}

/** Milliseconds, readably: `850 ms`, `12.5 s`, `3 min 4 s`, `2 h 5 min`. */
export function duration(ms) {
  if (ms == null || !Number.isFinite(ms)) return '—';
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${Math.round(ms / 100) / 10} s`;
  const s = Math.floor(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86_400)} d ${Math.floor((s % 86_400) / 3600)} h`;
}
