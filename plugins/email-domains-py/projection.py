"""Users by e-mail domain, in Python: the same projection as plugins/email-domains
(Rust) and plugins/email-domains-js, document for document and error for error.
See README.md.

componentize-py builds this module into a component of the world
`projection-plugin` (wit/projection/projection.wit): the class `Projection`
implements the exported interface `projection` (`info` and `apply`), and reads and
writes its read model through the imported interface `read-model`.

Read model:
    user/<id>        {"domain": "example.com"}
    domain/<domain>  {"domain": "example.com", "users": 2, "user_ids": ["u1", "u2"]}
A domain left with no users has no document. An `EmailChanged` of a user it never
saw created counts that user all the same.
"""

import bisect
import json
import re

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import read_model
from wit_world.imports.types import ErrorKind, Info, ProjectionError

import exact_json

INFO = Info(
    name="email-domains-py",
    version="0.1.0",
    sources=["user"],
    handles=["UserCreated", "EmailChanged"],
)

# Characters a domain may not hold: Rust's `char::is_whitespace` (Unicode
# White_Space) and `char::is_control` (Unicode Cc).
NOT_IN_A_DOMAIN = re.compile("[\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class Rejected(Exception):
    """An event refused: `kind` is the WIT error kind."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind
        self.message = message


def invalid(message):
    return Rejected(ErrorKind.INVALID_DATA, message)


def bad_document(key, message):
    return Rejected(ErrorKind.INVALID_DOCUMENT, f"{key}: {message}")


def debug_str(s):
    """A string quoted as Rust's `{:?}` quotes it (for messages)."""
    return json.dumps(s, ensure_ascii=False)


class Obj(dict):
    """A JSON object that knows whether it had the key `email` more than once."""

    def __init__(self, pairs):
        super().__init__(pairs)
        self.repeated_email = len(self) != len(pairs) and sum(k == "email" for k, _ in pairs) > 1


def _refuse_constant(name):
    raise ValueError(f"expected value, found {name}")


# The payload is read as the Rust projection's serde struct `{email: String}` reads
# it: other fields are only checked to be JSON (serde_json skips over them, numbers
# beyond a double and lone surrogate escapes included), so Python's own parser
# reads it, without exact_json's number and surrogate rules.
_DECODE_PAYLOAD = json.JSONDecoder(object_pairs_hook=Obj, parse_constant=_refuse_constant).decode


def email_of(data):
    try:
        value = _DECODE_PAYLOAD(data)
    except (ValueError, RecursionError) as err:
        raise invalid(str(err)) from None
    if isinstance(value, Obj):
        if value.repeated_email:
            raise invalid("duplicate field `email`")
        if "email" not in value:
            raise invalid("missing field `email`")
        email = value["email"]
    elif isinstance(value, list):
        # serde_json's words for an array of the wrong length.
        if not value:
            raise invalid("invalid length 0, expected struct Email with 1 element")
        if len(value) > 1:
            raise invalid("trailing characters")
        email = value[0]
    else:
        raise invalid("invalid type, expected struct Email")
    if not isinstance(email, str):
        raise invalid("email: invalid type, expected a string")
    if LONE_SURROGATE.search(email):
        raise invalid("email: lone surrogate in hex escape")
    return email


def domain_of(email):
    """The lowercased part of `email` after its last `@`: not empty, no whitespace."""
    at = email.rfind("@")
    domain = "" if at < 0 else email[at + 1 :]
    if not domain or NOT_IN_A_DOMAIN.search(domain):
        raise invalid(f"email {debug_str(email)} has no domain after an @")
    return domain.lower()


def get_object(key):
    text = read_model.get(key)
    if text is None:
        return None
    try:
        value = exact_json.loads(text)
    except exact_json.JsonError as err:
        raise bad_document(key, str(err)) from None
    if not isinstance(value, dict):
        raise bad_document(key, "invalid type, expected a JSON object")
    return value


def read_user(key):
    doc = get_object(key)
    if doc is None:
        return None
    if not isinstance(doc.get("domain"), str):
        raise bad_document(key, "field `domain` is missing or not a string")
    return {"domain": doc["domain"]}


def read_domain(key):
    doc = get_object(key)
    if doc is None:
        return None
    domain, users, ids = doc.get("domain"), doc.get("users"), doc.get("user_ids")
    if not isinstance(domain, str):
        raise bad_document(key, "field `domain` is not a string")
    # A usize of wasm32, as the Rust projection reads it.
    if type(users) is not int or not 0 <= users <= 0xFFFFFFFF:
        raise bad_document(key, "field `users` is not an unsigned integer")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise bad_document(key, "field `user_ids` is not a list of strings")
    return {"domain": domain, "users": users, "user_ids": ids}


class Held:
    """A document held parsed for the rest of the batch (`doc` None: none), as the
    Rust SDK's `ReadModel::update` holds them: read and parsed once per batch and,
    if changed, written once when the batch ends."""

    __slots__ = ("doc", "dirty")

    def __init__(self, doc):
        self.doc = doc
        self.dirty = False


class Batch:
    def __init__(self):
        self.held = {}

    def hold(self, key, read):
        h = self.held.get(key)
        if h is None:
            h = self.held[key] = Held(read(key))
        return h

    def write(self):
        """Writes every changed held document, in key order (Python compares
        strings by code point, as Rust compares them)."""
        for key in sorted(self.held):
            h = self.held[key]
            if not h.dirty:
                continue
            if h.doc is None:
                read_model.delete(key)
            else:
                # Written in the Rust structs' field order.
                read_model.put(key, exact_json.dumps(h.doc))

    def apply_one(self, event):
        domain = domain_of(email_of(event.data))
        uid = event.aggregate_id
        user = self.hold(f"user/{uid}", read_user)
        old = user.doc["domain"] if user.doc is not None else None
        if old == domain:
            return
        if old is not None:
            h = self.hold(f"domain/{old}", read_domain)
            d = h.doc
            if d is not None:
                # Every copy of the id, as Rust's `retain` removes them.
                ids = d["user_ids"]
                for _ in range(ids.count(uid)):
                    ids.remove(uid)
                d["users"] = len(d["user_ids"])
                if d["users"] == 0:
                    h.doc = None
                h.dirty = True
        h = self.hold(f"domain/{domain}", read_domain)
        if h.doc is None:
            h.doc = {"domain": domain, "users": 0, "user_ids": []}
        ids = h.doc["user_ids"]
        at = bisect.bisect_left(ids, uid)
        if at == len(ids) or ids[at] != uid:
            ids.insert(at, uid)
        h.doc["users"] = len(ids)
        h.dirty = True
        user.doc = {"domain": domain}
        user.dirty = True


class Projection(exports.Projection):
    def info(self) -> Info:
        return INFO

    def apply(self, events) -> None:
        batch = Batch()
        for index, event in enumerate(events):
            # The host passes only `handles`; anything else is skipped, as in Rust.
            if event.event_type not in ("UserCreated", "EmailChanged"):
                continue
            try:
                batch.apply_one(event)
            except Rejected as r:
                raise Err(ProjectionError(r.kind, index, r.message))
        batch.write()
