// Users by e-mail domain, in JavaScript: the same projection as
// plugins/email-domains (Rust), document for document and error for error. See
// README.md.
//
// The component implements the world `projection-plugin` of
// wit/projection/projection.wit: it exports the interface `projection` as the
// object below (`info` and `apply`), and reads and writes its read model through
// the imported interface `read-model`.
//
// Read model:
//   user/<id>        {"domain": "example.com"}
//   domain/<domain>  {"domain": "example.com", "users": 2, "user_ids": ["u1", "u2"]}
// A domain left with no users has no document. An `EmailChanged` of a user it
// never saw created counts that user all the same.

// `readModel.get(key)` gives the document's text or null; `put` and `delete` write.
import * as readModel from "streamfold:projection/read-model@0.1.0";
// Exact JSON (serde_json's rules: numbers kept as written, what it refuses is
// refused), shared with the `user` reducer in JavaScript: for the read model's
// documents, whose `users` must be an integer as serde's `usize` wants one.
import { parse } from "../../user-js/src/json.js";

/** What `info` reports. */
const INFO = {
  name: "email-domains-js",
  version: "0.1.0",
  sources: ["user"],
  handles: ["UserCreated", "EmailChanged"],
};

/**
 * A refusal: the WIT `projection-error`. jco returns a thrown error's `payload`
 * as the `err` of the function's `result`.
 */
class Rejection extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }
}

const invalidData = (message) => new Rejection("invalid-data", message);
const invalidDocument = (message) => new Rejection("invalid-document", message);

/**
 * Characters a domain may not hold: Rust's `char::is_whitespace` (Unicode
 * White_Space) and `char::is_control` (Unicode Cc). Not JavaScript's `\s`, which
 * also matches U+FEFF.
 */
const NOT_IN_A_DOMAIN =
  /[\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/;

/** The lowercased part of `email` after its last `@`: not empty, no whitespace. */
export function domainOf(email) {
  const at = email.lastIndexOf("@");
  const domain = at < 0 ? "" : email.slice(at + 1);
  if (domain === "" || NOT_IN_A_DOMAIN.test(domain)) {
    throw invalidData(`email ${debugString(email)} has no domain after an @`);
  }
  return domain.toLowerCase();
}

/** A string quoted as Rust's `{:?}` quotes it (for messages). */
function debugString(s) {
  return JSON.stringify(s).replace(/\\u00([0-9a-f]{2})/g, "\\u{$1}");
}

/** A lone UTF-16 surrogate: what a `\ud800` escape gives, and serde_json refuses. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/**
 * The `email` of an event's data, read as the Rust projection's serde struct
 * `{email: String}` reads it: an object with a string `email`, or an array holding
 * just that string. Other fields are only checked to be JSON, as serde_json skips
 * them (numbers beyond a double's range and lone surrogate escapes pass there):
 * so the engine's `JSON.parse`, which accepts exactly RFC 8259 JSON, reads it.
 */
function emailOf(data) {
  let value;
  try {
    value = JSON.parse(data);
  } catch (err) {
    throw invalidData(err.message);
  }
  if (value !== null && typeof value === "object" && !Array.isArray(value)) {
    // JSON.parse keeps the last of repeated keys; serde refuses a repeated field.
    if (data.indexOf("email") !== data.lastIndexOf("email") || data.includes("\\u")) {
      if (topLevelKeys(data).filter((k) => k === "email").length > 1) {
        throw invalidData("duplicate field `email`");
      }
    }
    value = new Map(Object.entries(value));
  }
  let email;
  if (value instanceof Map) {
    if (!value.has("email")) throw invalidData("missing field `email`");
    email = value.get("email");
  } else if (Array.isArray(value)) {
    // serde_json's words for an array of the wrong length.
    if (value.length === 0) throw invalidData("invalid length 0, expected struct Email with 1 element");
    if (value.length > 1) throw invalidData("trailing characters");
    email = value[0];
  } else {
    throw invalidData("invalid type, expected struct Email");
  }
  if (typeof email !== "string") throw invalidData("email: invalid type, expected a string");
  if (LONE_SURROGATE.test(email)) throw invalidData("email: lone surrogate in hex escape");
  return email;
}

/** The keys of the JSON object `text` (valid JSON: JSON.parse read it), in order,
 * repeated ones too. */
function topLevelKeys(text) {
  const keys = [];
  let depth = 0;
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      if (depth === 1 && expectKey) keys.push(JSON.parse(text.slice(i, j + 1)));
      expectKey = false;
      i = j;
    } else if (c === "{" || c === "[") {
      depth++;
      expectKey = c === "{" && depth === 1;
    } else if (c === "}" || c === "]") {
      depth--;
    } else if (c === "," && depth === 1) {
      expectKey = true;
    }
  }
  return keys;
}

/** The document under `key`, parsed (a Map), or undefined; invalid-document if it
 * is not a JSON object. */
function getObject(key) {
  const text = readModel.get(key);
  if (text === null || text === undefined) return undefined;
  let value;
  try {
    value = parse(text);
  } catch (err) {
    throw invalidDocument(`${key}: ${err.message}`);
  }
  if (!(value instanceof Map)) throw invalidDocument(`${key}: invalid type, expected a JSON object`);
  return value;
}

/** `user/<id>`'s document `{domain}`, or undefined. */
function readUser(key) {
  const doc = getObject(key);
  if (doc === undefined) return undefined;
  const domain = doc.get("domain");
  if (typeof domain !== "string") {
    throw invalidDocument(`${key}: ${doc.has("domain") ? "invalid type for" : "missing"} field \`domain\``);
  }
  return { domain };
}

/** `domain/<domain>` as `{domain, users, user_ids}`, or undefined. */
function readDomain(key) {
  const doc = getObject(key);
  if (doc === undefined) return undefined;
  const domain = doc.get("domain");
  const users = doc.get("users");
  const ids = doc.get("user_ids");
  if (typeof domain !== "string") throw invalidDocument(`${key}: field \`domain\` is not a string`);
  // A usize of wasm32, as the Rust projection reads it.
  if (!Number.isInteger(users) || users < 0 || users > 0xffffffff) {
    throw invalidDocument(`${key}: field \`users\` is not an unsigned integer`);
  }
  if (!Array.isArray(ids) || !ids.every((id) => typeof id === "string")) {
    throw invalidDocument(`${key}: field \`user_ids\` is not a list of strings`);
  }
  return { domain, users, user_ids: ids };
}

// Documents held parsed for the rest of the batch, as the Rust SDK's
// `ReadModel::update` holds them: key -> {doc (undefined: none), dirty}. Each is
// read and parsed once per batch and, if changed, written once when the batch ends,
// so an event changes a list of thousands of ids without parsing or printing it.
let held = new Map();

/** The document under `key`, held: read with `read` the first time in the batch. */
function hold(key, read) {
  let h = held.get(key);
  if (h === undefined) {
    h = { doc: read(key), dirty: false };
    held.set(key, h);
  }
  return h;
}

/** Writes every changed held document (in key order) and forgets them all. */
function writeHeld() {
  const keys = [...held.keys()].sort(compare);
  for (const key of keys) {
    const h = held.get(key);
    if (!h.dirty) continue;
    // Written with `JSON.stringify`, in the Rust structs' field order: for strings
    // and integers it prints exactly what serde_json prints.
    if (h.doc === undefined) readModel.delete(key);
    else readModel.put(key, JSON.stringify(h.doc));
  }
  held = new Map();
}

/** Compares strings by code point, i.e. as Rust compares them (UTF-8 byte order),
 * not by UTF-16 unit as `<` does. */
function compare(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.codePointAt(i);
    const y = b.codePointAt(i);
    if (x !== y) return x < y ? -1 : 1;
    if (x > 0xffff) i++;
  }
  return a.length - b.length;
}

/** Where `id` is in the sorted `ids`: [found, index]. */
function search(ids, id) {
  let lo = 0;
  let hi = ids.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const c = compare(ids[mid], id);
    if (c === 0) return [true, mid];
    if (c < 0) lo = mid + 1;
    else hi = mid;
  }
  return [false, lo];
}

function applyOne(event) {
  const domain = domainOf(emailOf(event.data));
  const id = event.aggregateId;
  const user = hold(`user/${id}`, readUser);
  const old = user.doc?.domain;
  if (old === domain) return;
  if (old !== undefined) {
    const h = hold(`domain/${old}`, readDomain);
    const d = h.doc;
    if (d !== undefined) {
      // Every copy of the id, as Rust's `retain` removes them (`indexOf` is native).
      for (let i = d.user_ids.indexOf(id); i >= 0; i = d.user_ids.indexOf(id, i)) {
        d.user_ids.splice(i, 1);
      }
      d.users = d.user_ids.length;
      if (d.users === 0) h.doc = undefined;
      h.dirty = true;
    }
  }
  const h = hold(`domain/${domain}`, readDomain);
  const d = (h.doc ??= { domain, users: 0, user_ids: [] });
  const [found, at] = search(d.user_ids, id);
  if (!found) d.user_ids.splice(at, 0, id);
  d.users = d.user_ids.length;
  h.dirty = true;
  user.doc = { domain };
  user.dirty = true;
}

function apply(events) {
  held = new Map();
  for (let index = 0; index < events.length; index++) {
    const event = events[index];
    // The host passes only `handles`; anything else is skipped, as in Rust.
    if (event.eventType !== "UserCreated" && event.eventType !== "EmailChanged") continue;
    try {
      applyOne(event);
    } catch (err) {
      if (err instanceof Rejection) {
        const e = new Error(err.message);
        e.payload = { kind: err.kind, eventIndex: index, message: err.message };
        throw e;
      }
      throw err; // a bug: a trap, which the host reports as a crash
    }
  }
  writeHeld();
}

export const projection = {
  info: () => INFO,
  apply,
};
