// The seed document's `user` aggregate, in JavaScript: the same reducer as
// plugins/user (Rust), state for state and error for error. See README.md.
//
// The component implements the world `plugin` of wit/reducer.wit: it exports the
// interface `reducer` as the object below (`info` and the resource `Aggregate`).

import { parse, parseFields, stringify } from "./json.js";

/** What `info` reports. */
const INFO = {
  name: "user-js",
  version: "0.1.0",
  aggregateType: "user",
  handles: ["UserCreated", "EmailChanged", "NameChanged"],
};

/** Per event type: the state keys it sets and, in the same order, the data fields
 * they come from. No prototype, so no other name (`toString`) finds anything. */
const CHANGES = Object.assign(Object.create(null), {
  UserCreated: { keys: ["id", "name", "email", "created_at"], fields: ["id", "name", "email", "timestamp"] },
  EmailChanged: { keys: ["email", "email_updated_at"], fields: ["email", "timestamp"] },
  NameChanged: { keys: ["name"], fields: ["name"] },
});

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
      // A property read, not Map.get: no call of a built-in (see json.js).
      const changes = CHANGES[event.eventType];
      if (changes === undefined) continue; // not in `handles`: the host skips these
      const { keys, fields: names } = changes;
      let values;
      try {
        values = parseFields(event.data, names);
      } catch (err) {
        throw rejection("invalid-data", index, err.message);
      }
      if (values === undefined) {
        throw rejection("invalid-data", index, "expected a JSON object");
      }
      // Check every field first: a missing one refuses the event before any change.
      const n = names.length;
      for (let i = 0; i < n; i++) {
        if (values[i] === undefined) {
          throw rejection("invalid-data", index, `field "${names[i]}" is missing`);
        }
      }
      for (let i = 0; i < n; i++) fields.set(keys[i], values[i]);
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
