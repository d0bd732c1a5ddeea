// The seed document's `user` aggregate, in JavaScript: the same reducer as
// plugins/user (Rust), state for state and error for error. See README.md.
//
// The component implements the world `plugin` of wit/reducer.wit: it exports the
// interface `reducer` as the object below (`info` and the resource `Aggregate`).

import { parse, stringify } from "./json.js";

/** What `info` reports. */
const INFO = {
  name: "user-js",
  version: "0.1.0",
  aggregateType: "user",
  handles: ["UserCreated", "EmailChanged", "NameChanged"],
};

/** Per event type: the state keys it sets and the data fields they come from, in
 * order, as one flat list: [state key, data field, state key, data field, ...]. */
const CHANGES = new Map([
  ["UserCreated", ["id", "id", "name", "name", "email", "email", "created_at", "timestamp"]],
  ["EmailChanged", ["email", "email", "email_updated_at", "timestamp"]],
  ["NameChanged", ["name", "name"]],
]);

/**
 * A refusal: the WIT `reducer-error`. jco returns a thrown error's `payload` as
 * the `err` of the function's `result`.
 */
function rejection(kind, eventIndex, message) {
  const err = new Error(message);
  err.payload = { kind, eventIndex, message };
  return err;
}

class Aggregate {
  /** The empty state: `{}`. The id is not part of it. */
  constructor(_id) {
    /** Keys in insertion order, like the seed's Python dict. */
    this.fields = new Map();
  }

  restore(snapshot) {
    let value;
    try {
      value = parse(snapshot);
    } catch (err) {
      throw rejection("invalid-snapshot", undefined, `cannot read the snapshot: ${err.message}`);
    }
    if (!(value instanceof Map)) {
      throw rejection("invalid-snapshot", undefined, "cannot read the snapshot: not a JSON object");
    }
    this.fields = value;
  }

  apply(events) {
    const fields = this.fields;
    for (let index = 0; index < events.length; index++) {
      const event = events[index];
      const changes = CHANGES.get(event.eventType);
      if (changes === undefined) continue; // not in `handles`: the host skips these
      let data;
      try {
        data = parse(event.data);
      } catch (err) {
        throw rejection("invalid-data", index, err.message);
      }
      if (!(data instanceof Map)) {
        throw rejection("invalid-data", index, "expected a JSON object");
      }
      // Check every field first: a missing one refuses the event before any change.
      const n = changes.length;
      for (let i = 1; i < n; i += 2) {
        if (!data.has(changes[i])) {
          throw rejection("invalid-data", index, `field "${changes[i]}" is missing`);
        }
      }
      for (let i = 0; i < n; i += 2) fields.set(changes[i], data.get(changes[i + 1]));
    }
  }

  state() {
    return stringify(this.fields);
  }
}

export const reducer = {
  info: () => INFO,
  Aggregate,
};
