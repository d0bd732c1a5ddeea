// What changed between two JSON documents, member by member.

import { escapePointer, isObject } from './dom.js';

/**
 * The differences from `before` to `after`: `{path, kind, before, after}` with
 * `path` a JSON Pointer (`/items/A/qty`, `''` for the whole document) and `kind`
 * `added`, `removed` or `changed`. Objects and arrays are compared member by
 * member; anything else, and a change of kind, is one change. With `before`
 * undefined (no state yet) every member of `after` counts as added.
 */
export function diff(before, after) {
  const out = [];
  walk(before === undefined && isObject(after) ? {} : before, after, '', out);
  return out;
}

function walk(a, b, path, out) {
  if (equal(a, b)) return;
  if (isObject(a) && isObject(b)) {
    const keys = [...Object.keys(b), ...Object.keys(a).filter((k) => !Object.hasOwn(b, k))];
    // Own members only: a key such as `__proto__` is data here, not the prototype.
    const own = (o, k) => (Object.hasOwn(o, k) ? o[k] : undefined);
    for (const k of keys) walk(own(a, k), own(b, k), `${path}/${escapePointer(k)}`, out);
  } else if (Array.isArray(a) && Array.isArray(b)) {
    for (let i = 0; i < Math.max(a.length, b.length); i++) walk(a[i], b[i], `${path}/${i}`, out);
  } else {
    const kind = a === undefined ? 'added' : b === undefined ? 'removed' : 'changed';
    out.push({ path, kind, before: a, after: b });
  }
}

/** Deep equality of JSON values (member order does not count). */
export function equal(a, b) {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => equal(x, b[i]));
  if (isObject(a) && isObject(b)) {
    const ka = Object.keys(a);
    return ka.length === Object.keys(b).length && ka.every((k) => Object.hasOwn(b, k) && equal(a[k], b[k]));
  }
  return false;
}

/** Every path a change touches: what `jsonView` marks. */
export const changedPaths = (changes) => new Set(changes.map((c) => c.path));
