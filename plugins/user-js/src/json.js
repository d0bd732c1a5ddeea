// Exact JSON for reducers: parse and print JSON the way the Rust reducers
// (serde_json) do, without JavaScript's losses.
//
// `JSON.parse` alone would lose three things a reducer must keep:
//   - integers beyond 2^53 (an id of 9007199254740993 would become ...992);
//   - the difference between `1.0` and `1` (the Rust reducers keep `1.0` a float);
//   - the order of object keys that look like integers ({"2": .., "1": ..}).
// So `parse` gives:
//   - objects as `Map`s (insertion order, for every key; a repeated key keeps its
//     first position and takes the last value, like serde_json and Python);
//   - integers of up to 15 digits as plain numbers (exact in a double);
//   - every other number as a `JsonNumber`, which keeps its text: other integers
//     exactly as written, whatever their size; floats in serde_json's shortest
//     form, so `1.0` stays `1.0` and `1E2` becomes `100.0`;
//   - strings, booleans, null and arrays as usual.
// It accepts exactly what serde_json accepts: RFC 8259 JSON, no lone surrogate
// escapes, numbers within the f64 range, at most 127 levels of nesting.
//
// Speed: the engine's native `JSON.parse` does the work, and its result is kept
// when it cannot differ from serde_json's: no integer-like key, no surrogate
// escape, no deep nesting, and either no number at all (the usual event: strings)
// or only integers of up to 15 digits written plainly (no fraction, no exponent,
// not -0). The checks look at the parsed value first, which is cheap; only a value
// holding numbers is parsed again, with a reviver that reads each number's text
// (`JSON.parse` source text access, which QuickJS has; an engine without it sends
// every text with a number to the parser below). Anything else goes to a parser
// written here, which keeps the number text.
//
// `stringify` prints such values compactly, as serde_json does (same escapes,
// non-ASCII kept as is, floats in its form). It also prints plain JavaScript
// objects (in their key order), BigInts and numbers, for the reducer's own state.

/** A JSON number, kept as canonical text so no precision is lost. */
export class JsonNumber {
  /** @param {string} text canonical JSON number text */
  constructor(text) {
    this.text = text;
  }
  /** Whether it is an integer (no fraction, no exponent). */
  isInteger() {
    return !/[.eE]/.test(this.text);
  }
  /** The integer as a BigInt (exact), or null if it is not an integer. */
  toBigInt() {
    return this.isInteger() ? BigInt(this.text) : null;
  }
  toJSON() {
    return this.text;
  }
}

/** Thrown for text that is not JSON; `message` says where and why. */
export class JsonError extends Error {}

const CONTROL = /[\u0000-\u001f]/;
const MAX_DEPTH = 128; // serde_json's recursion limit: 127 levels pass
const SURROGATE_ESCAPE = /\\u[dD][89a-fA-F]/;

/**
 * Parses one JSON document (surrounding whitespace allowed).
 * @param {string} text
 */
export function parse(text) {
  let native;
  try {
    native = JSON.parse(text);
  } catch {
    return parseExactly(text); // not JSON: it says where and why
  }
  seen = 0;
  const value = toMaps(native, MAX_DEPTH);
  if (seen & (INTEGER_KEY_SEEN | TOO_DEEP)) return parseExactly(text);
  if (text.includes("\\u") && SURROGATE_ESCAPE.test(text)) return parseExactly(text);
  if (seen & NUMBER_SEEN && !plainNumbers(text)) return parseExactly(text);
  return value;
}

/**
 * The values of the fields `names` of the JSON object `text`, in that order
 * (`undefined` for a field it does not have), each exactly as `parse(text).get(name)`
 * gives it; or `undefined` when `text` is JSON but not an object. It throws a
 * `JsonError` where `parse` does (serde_json refuses the whole text, read fields
 * or not).
 *
 * For reducers that read a few fields of each event: the usual event, a flat
 * object of strings, costs one `JSON.parse` and one pass over its values, with no
 * `Map` (key order does not matter to a field read). Anything else (nested values,
 * escapes that could be lone surrogates, a read field holding a number written
 * otherwise than JavaScript prints it) goes through `parse`.
 * @param {string} text
 * @param {string[]} names
 */
export function parseFields(text, names) {
  let native;
  try {
    native = JSON.parse(text);
  } catch {
    native = undefined; // not JSON: `parse` says where and why
  }
  // (`constructor` rather than Array.isArray: in QuickJS's interpreter every call
  // of a built-in costs thousands of instructions. JSON.parse makes plain objects
  // and arrays only; an own `constructor` key just takes the slow path.)
  if (typeof native !== "object" || native === null || native.constructor !== Object || text.includes("\\u")) {
    return fieldsOf(parse(text), names);
  }
  // Every value must be a primitive serde_json reads alike; a number only needs
  // to be finite here (serde_json refuses the others) unless it is read below.
  const values = Object.values(native);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (typeof v === "object") {
      if (v !== null) return fieldsOf(parse(text), names);
    } else if (typeof v === "number" && !Number.isFinite(v)) {
      return fieldsOf(parse(text), names);
    }
  }
  const n = names.length;
  const out = [];
  let number = false;
  for (let i = 0; i < n; i++) {
    let v = native[names[i]];
    // Own values are primitives now: an object or a function is inherited from
    // Object.prototype (`toString`, `__proto__`), not in the text.
    if (typeof v === "object" ? v !== null : typeof v === "function") v = undefined;
    else if (typeof v === "number") number = true;
    out[i] = v;
  }
  if (number && !plainNumbers(text)) return fieldsOf(parse(text), names);
  return out;
}

/** `parseFields`' answer for a value `parse` gave. */
function fieldsOf(value, names) {
  if (!(value instanceof Map)) return undefined;
  return names.map((name) => value.get(name));
}

/**
 * JSON text (JSON.parse read it) whose every number is an integer of up to 15
 * digits written plainly: no fraction, no exponent, not -0. Strings are skipped
 * whole, so digits in them do not count. One native call, where the reviver
 * below costs one call into the interpreter per value and a second parse: about
 * 1 µs against 5 µs for the bench's `UserCreated` event (`apply` of a one-event
 * replay, perf samples). Each alternative starts on a different character and
 * none repeats inside the outer `*`, so a text that does not match fails without
 * backtracking.
 */
const PLAIN_NUMBERS =
  /^(?:"[^"\\]*(?:\\.[^"\\]*)*"|[\s{}[\]:,]|true|false|null|-?[1-9]\d{0,14}(?![\d.eE])|0(?![\d.eE]))*$/;

/** Texts longer than this are checked by the reviver (a backtracking regular
 * expression over a long text can run out of its stack). */
const PLAIN_NUMBERS_MAX = 4096;

/** Whether every number in `text` (JSON) reads the same with JSON.parse as with
 * serde_json; false when unsure. */
function plainNumbers(text) {
  if (text.length <= PLAIN_NUMBERS_MAX) return PLAIN_NUMBERS.test(text);
  inexact = false;
  JSON.parse(text, checkNumber);
  return !inexact;
}

/** Whether `checkNumber` met a number JSON.parse does not keep as serde_json does. */
let inexact = false;

/**
 * A `JSON.parse` reviver that notes, in `inexact`, a number whose text is not an
 * integer of up to 15 digits written as JavaScript prints it (`1.0`, `1e2`, `-0`,
 * `9007199254740993`); or any number, when the engine gives no source text.
 */
function checkNumber(_key, v, context) {
  if (typeof v === "number") {
    const text = context?.source;
    if (text === undefined || text.length > 15 || !Number.isInteger(v) || String(v) !== text) {
      inexact = true;
    }
  }
  return v;
}

/** The parser written here: exact, and slower. */
function parseExactly(text) {
  const p = new Parser(text);
  p.ws();
  const value = p.value(MAX_DEPTH);
  p.ws();
  if (p.i < text.length) p.fail("trailing characters");
  return value;
}

// What `toMaps` saw, for `parse` to decide whether JSON.parse's value stands.
const NUMBER_SEEN = 1;
const INTEGER_KEY_SEEN = 2; // its place in for...in order is not its place in the text
const TOO_DEEP = 4;
let seen = 0;
const DIGITS = /^\d+$/;

/**
 * What JSON.parse gave, with its objects made Maps (in their key order: for...in
 * is insertion order when no key looks like an integer), noting in `seen` what
 * could make it differ from serde_json's reading.
 */
function toMaps(value, depth) {
  if (typeof value === "number") {
    seen |= NUMBER_SEEN;
    return value;
  }
  if (value === null || typeof value !== "object") return value;
  return container(value, depth);
}

/** `toMaps` of an object or array; the usual values are handled inline (a call
 * costs more than the test in the engine's interpreter). */
function container(value, depth) {
  if (--depth === 0) {
    seen |= TOO_DEEP;
    return value;
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const v = value[i];
      if (typeof v === "object") {
        if (v !== null) value[i] = container(v, depth);
      } else if (typeof v === "number") seen |= NUMBER_SEEN;
    }
    return value;
  }
  const map = new Map();
  for (const key in value) {
    const c = key.charCodeAt(0);
    if (c <= 57 && c >= 48 && DIGITS.test(key)) seen |= INTEGER_KEY_SEEN;
    const v = value[key];
    if (typeof v === "object") {
      map.set(key, v === null ? v : container(v, depth));
    } else {
      if (typeof v === "number") seen |= NUMBER_SEEN;
      map.set(key, v);
    }
  }
  return map;
}

class Parser {
  constructor(text) {
    this.s = text;
    this.i = 0;
  }

  fail(what) {
    throw new JsonError(`${what} at character ${this.i + 1}`);
  }

  ws() {
    const s = this.s;
    let i = this.i;
    for (;;) {
      const c = s.charCodeAt(i);
      if (c === 32 || c === 10 || c === 13 || c === 9) i++;
      else break;
    }
    this.i = i;
  }

  value(depth) {
    const c = this.s.charCodeAt(this.i);
    switch (c) {
      case 123: // {
        return this.object(depth);
      case 91: // [
        return this.array(depth);
      case 34: // "
        return this.string();
      case 116: // t
        return this.word("true", true);
      case 102: // f
        return this.word("false", false);
      case 110: // n
        return this.word("null", null);
      default:
        if (c === 45 || (c >= 48 && c <= 57)) return this.number();
        return this.fail(Number.isNaN(c) ? "EOF while parsing a value" : "expected value");
    }
  }

  word(w, value) {
    if (this.s.startsWith(w, this.i)) {
      this.i += w.length;
      return value;
    }
    return this.fail("expected value");
  }

  object(depth) {
    if (--depth === 0) this.fail("recursion limit exceeded");
    this.i++;
    const map = new Map();
    this.ws();
    if (this.s.charCodeAt(this.i) === 125) {
      this.i++;
      return map;
    }
    for (;;) {
      if (this.s.charCodeAt(this.i) !== 34) this.fail("key must be a string");
      const key = this.string();
      this.ws();
      if (this.s.charCodeAt(this.i) !== 58) this.fail("expected ':'");
      this.i++;
      this.ws();
      map.set(key, this.value(depth));
      this.ws();
      const c = this.s.charCodeAt(this.i++);
      if (c === 44) {
        this.ws();
        continue;
      }
      if (c === 125) return map;
      this.i--;
      this.fail("expected ',' or '}'");
    }
  }

  array(depth) {
    if (--depth === 0) this.fail("recursion limit exceeded");
    this.i++;
    const list = [];
    this.ws();
    if (this.s.charCodeAt(this.i) === 93) {
      this.i++;
      return list;
    }
    for (;;) {
      list.push(this.value(depth));
      this.ws();
      const c = this.s.charCodeAt(this.i++);
      if (c === 44) {
        this.ws();
        continue;
      }
      if (c === 93) return list;
      this.i--;
      this.fail("expected ',' or ']'");
    }
  }

  string() {
    const s = this.s;
    const start = ++this.i;
    // Fast path: no escapes. The text came through WIT as valid UTF-8, so it has
    // no lone surrogates of its own; only control characters need refusing.
    const end = s.indexOf('"', start);
    if (end < 0) {
      this.i = s.length;
      this.fail("EOF while parsing a string");
    }
    const backslash = s.indexOf("\\", start);
    if (backslash < 0 || backslash > end) {
      const str = s.slice(start, end);
      if (CONTROL.test(str)) {
        this.i = start + str.search(CONTROL);
        this.fail("control character in a string");
      }
      this.i = end + 1;
      return str;
    }
    return this.escapedString(start);
  }

  escapedString(start) {
    const s = this.s;
    let out = "";
    let i = start;
    let chunk = start;
    for (;;) {
      const c = s.charCodeAt(i);
      if (Number.isNaN(c)) {
        this.i = i;
        this.fail("EOF while parsing a string");
      }
      if (c === 34) {
        out += s.slice(chunk, i);
        this.i = i + 1;
        return out;
      }
      if (c < 32) {
        this.i = i;
        this.fail("control character in a string");
      }
      if (c !== 92) {
        i++;
        continue;
      }
      out += s.slice(chunk, i);
      const e = s.charCodeAt(i + 1);
      i += 2;
      switch (e) {
        case 34: out += '"'; break;
        case 92: out += "\\"; break;
        case 47: out += "/"; break;
        case 98: out += "\b"; break;
        case 102: out += "\f"; break;
        case 110: out += "\n"; break;
        case 114: out += "\r"; break;
        case 116: out += "\t"; break;
        case 117: { // u
          const hi = this.hex4(i);
          i += 4;
          if (hi >= 0xdc00 && hi <= 0xdfff) {
            this.i = i;
            this.fail("lone trailing surrogate in hex escape");
          }
          if (hi >= 0xd800 && hi <= 0xdbff) {
            if (s.charCodeAt(i) !== 92 || s.charCodeAt(i + 1) !== 117) {
              this.i = i;
              this.fail("lone leading surrogate in hex escape");
            }
            const lo = this.hex4(i + 2);
            if (lo < 0xdc00 || lo > 0xdfff) {
              this.i = i;
              this.fail("lone leading surrogate in hex escape");
            }
            i += 6;
            out += String.fromCharCode(hi, lo);
          } else {
            out += String.fromCharCode(hi);
          }
          break;
        }
        default:
          this.i = i - 1;
          this.fail("invalid escape");
      }
      chunk = i;
    }
  }

  hex4(i) {
    const h = this.s.slice(i, i + 4);
    if (!/^[0-9a-fA-F]{4}$/.test(h)) {
      this.i = i;
      this.fail("invalid hex escape");
    }
    return parseInt(h, 16);
  }

  number() {
    const s = this.s;
    const start = this.i;
    let i = start;
    if (s.charCodeAt(i) === 45) i++;
    let c = s.charCodeAt(i);
    if (c === 48) {
      i++;
      c = s.charCodeAt(i);
      if (c >= 48 && c <= 57) {
        this.i = i;
        this.fail("invalid number");
      }
    } else if (c >= 49 && c <= 57) {
      do c = s.charCodeAt(++i);
      while (c >= 48 && c <= 57);
    } else {
      this.i = i;
      this.fail("invalid number");
    }
    let integer = true;
    if (c === 46) { // .
      integer = false;
      const digits = ++i;
      for (c = s.charCodeAt(i); c >= 48 && c <= 57; c = s.charCodeAt(++i));
      if (i === digits) {
        this.i = i;
        this.fail("invalid number");
      }
    }
    if (c === 101 || c === 69) { // e E
      integer = false;
      c = s.charCodeAt(++i);
      if (c === 43 || c === 45) c = s.charCodeAt(++i);
      const digits = i;
      for (; c >= 48 && c <= 57; c = s.charCodeAt(++i));
      if (i === digits) {
        this.i = i;
        this.fail("invalid number");
      }
    }
    this.i = i;
    const text = s.slice(start, i);
    if (integer) {
      // Exact, whatever the size; "-0" is a float in serde_json.
      if (text === "-0") return new JsonNumber("-0.0");
      if (i - start <= (text.charCodeAt(0) === 45 ? 16 : 15)) return Number(text);
      if (text.length > 300 && !Number.isFinite(Number(text))) {
        this.fail("number out of range");
      }
      return new JsonNumber(text);
    }
    const f = Number(text);
    if (!Number.isFinite(f)) this.fail("number out of range");
    return new JsonNumber(formatFloat(f));
  }
}

/**
 * A finite float in serde_json's form (the `zmij` crate's): the shortest digits
 * that read back to the same float, plain from 1e-5 to 1e16 (`1.0`, `0.001`,
 * `123.45`), in exponent form outside (`1e+16`, `1.5e-7`).
 * @param {number} f
 */
export function formatFloat(f) {
  if (f === 0) return Object.is(f, -0) ? "-0.0" : "0.0";
  const sign = f < 0 ? "-" : "";
  // "d.ddde+x": the shortest round-trip digits and the exponent.
  const [mantissa, exp] = Math.abs(f).toExponential().split("e");
  const digits = mantissa.replace(".", "");
  const length = digits.length;
  const kk = Number(exp) + 1; // 10^(kk-1) <= |f| < 10^kk
  const k = kk - length; // |f| = digits * 10^k
  let out;
  if (k >= 0 && kk <= 16) out = digits + "0".repeat(k) + ".0";
  else if (kk > 0 && kk <= 16) out = digits.slice(0, kk) + "." + digits.slice(kk);
  else if (kk > -5 && kk <= 0) out = "0." + "0".repeat(-kk) + digits;
  else {
    const e = kk - 1;
    out = digits[0] + (length > 1 ? "." + digits.slice(1) : "") + (e < 0 ? "e" : "e+") + e;
  }
  return sign + out;
}

/**
 * Compact JSON text of `value`, as serde_json prints it.
 * Accepts parsed values (Maps, JsonNumbers) and plain JavaScript ones: objects
 * (in their key order), arrays, strings, booleans, null, BigInts, and numbers
 * (integers print as integers; use JsonNumber or formatFloat for floats).
 */
export function stringify(value) {
  const plain = flatObject(value);
  if (plain !== undefined) return JSON.stringify(plain);
  const out = [];
  write(value, out);
  return out.join("");
}

/**
 * A `Map` of strings, booleans, nulls and safe integers, whose keys cannot look
 * like integers, as a plain object `JSON.stringify` prints the same way; else
 * undefined. The usual flat state: one native call instead of `write`'s many
 * (7 µs against 13.5 µs for the `user` state in QuickJS).
 */
function flatObject(value) {
  if (!(value instanceof Map)) return undefined;
  flat = {};
  value.forEach(copyFlat);
  const result = flat;
  flat = undefined;
  return result;
}

/** `flatObject`'s object, while it is made (undefined once it cannot be). */
let flat;

function copyFlat(v, key) {
  if (flat === undefined) return;
  let ok;
  switch (typeof v) {
    case "string":
    case "boolean":
      ok = true;
      break;
    case "number":
      ok = Number.isSafeInteger(v);
      break;
    case "object":
      ok = v === null;
      break;
    default:
      ok = false;
  }
  // Not a key JavaScript would put first (one that starts with a digit), nor one
  // an assignment would not make a plain property.
  if (ok && typeof key === "string" && !(key.charCodeAt(0) <= 57 && key.charCodeAt(0) >= 48) && key !== "__proto__") {
    flat[key] = v;
  } else {
    flat = undefined;
  }
}

function write(v, out) {
  if (v === null || v === undefined) {
    out.push("null");
  } else if (typeof v === "string") {
    out.push(quote(v));
  } else if (typeof v === "boolean") {
    out.push(v ? "true" : "false");
  } else if (typeof v === "bigint") {
    out.push(v.toString());
  } else if (typeof v === "number") {
    if (!Number.isFinite(v)) out.push("null");
    else if (Number.isSafeInteger(v) && !Object.is(v, -0)) out.push(String(v));
    else if (Number.isInteger(v)) out.push(BigInt(v).toString());
    else out.push(formatFloat(v));
  } else if (v instanceof JsonNumber) {
    out.push(v.text);
  } else if (Array.isArray(v)) {
    out.push("[");
    for (let i = 0; i < v.length; i++) {
      if (i > 0) out.push(",");
      write(v[i], out);
    }
    out.push("]");
  } else if (v instanceof Map) {
    out.push("{");
    let first = true;
    for (const [k, x] of v) {
      if (!first) out.push(",");
      first = false;
      out.push(quote(k), ":");
      write(x, out);
    }
    out.push("}");
  } else {
    out.push("{");
    let first = true;
    for (const k of Object.keys(v)) {
      if (!first) out.push(",");
      first = false;
      out.push(quote(k), ":");
      write(v[k], out);
    }
    out.push("}");
  }
}

// serde_json's escapes: `"`, `\`, and control characters; everything else as is.
// JSON.stringify of a string is exactly that for well-formed strings (and our
// strings are well formed: they come from valid UTF-8 or checked escapes).
function quote(s) {
  return JSON.stringify(s);
}
