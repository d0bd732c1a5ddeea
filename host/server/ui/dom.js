// Building the page. Nothing here parses HTML: text goes in as text nodes, and
// attributes through setAttribute, so what an event or a reducer says is shown,
// never run.

/**
 * An element: `h('a', {href, class: 'x', onclick: f}, 'text', child, [more])`.
 * Props: `class`, `on<event>` listeners, DOM properties (`value`, `hidden`,
 * `disabled`, `checked`, `selected`) and attributes (`true` sets an empty one).
 * Children: nodes or strings (as text); null, undefined and false are left out.
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value == null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (PROPERTIES.has(key)) el[key] = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  el.append(...children.flat(Infinity).filter((c) => c != null && c !== false));
  return el;
}

const PROPERTIES = new Set(['value', 'hidden', 'disabled', 'checked', 'selected']);

/** Text only screen readers read (a cue that colour alone would give). */
const srOnly = (text) => h('span', { class: 'sr-only' }, text);

/** The millisecond time of a stream position (`ms-seq`): when Redis stored it. */
export function storedAt(position) {
  const ms = Number(String(position ?? '').split('-')[0]);
  return Number.isFinite(ms) && ms > 0 ? ms : null;
}

/** A time as `2026-11-26 10:00:00.123Z` (UTC: what `as_of` takes). */
export function utc(ms) {
  return ms == null ? '—' : new Date(ms).toISOString().replace('T', ' ');
}

/** JSON text on one line, cut to `max` characters. */
export function brief(value, max = 160) {
  const text = value === undefined ? '(none)' : JSON.stringify(value);
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

/**
 * A JSON value as indented text, one line per member. The lines of the members at
 * the JSON Pointers in `marked` (and everything under them) are marked, with a
 * cue for screen readers as well as the colour.
 */
export function jsonView(value, marked = new Set()) {
  const pre = h('pre', { class: 'json' });
  const line = (depth, pointer, key, text, on) => {
    const content = [' '.repeat(depth * 2), key == null ? '' : `${JSON.stringify(key)}: `, text, '\n'];
    pre.append(on ? h('mark', {}, srOnly('differs: '), ...content) : h('span', {}, ...content));
  };
  const walk = (v, depth, pointer, key, comma, inMark) => {
    const on = inMark || marked.has(pointer);
    const end = comma ? ',' : '';
    const entries = Array.isArray(v) ? v.map((x, i) => [i, x]) : isObject(v) ? Object.entries(v) : null;
    if (!entries || entries.length === 0) {
      line(depth, pointer, key, `${entries ? (Array.isArray(v) ? '[]' : '{}') : JSON.stringify(v)}${end}`, on);
      return;
    }
    const [open, close] = Array.isArray(v) ? ['[', ']'] : ['{', '}'];
    line(depth, pointer, key, open, on);
    entries.forEach(([k, x], i) =>
      walk(x, depth + 1, `${pointer}/${escapePointer(k)}`, Array.isArray(v) ? null : k, i < entries.length - 1, on));
    line(depth, pointer, null, `${close}${end}`, on);
  };
  walk(value, 0, '', null, false, false);
  return pre;
}

export const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);

/** One JSON Pointer segment (RFC 6901). */
export const escapePointer = (key) => String(key).replaceAll('~', '~0').replaceAll('/', '~1');

/** A definition list from [term, description] pairs (descriptions may be nodes). */
export function facts(pairs) {
  return h('dl', { class: 'facts' },
    pairs.filter(([, v]) => v != null && v !== '').map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}
