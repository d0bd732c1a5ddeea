"""Daily cart totals, in Python: a projection of the `cart` category. Per UTC day
(of each event's append time), how many carts were opened, checked out and
abandoned, how many units were sold and for how much. See README.md.

componentize-py builds this module into a component of the world
`projection-plugin` (wit/projection/projection.wit): the class `Projection`
implements the exported interface `projection` (`info` and `apply`), and the
imported interface `read-model` holds everything it knows between batches.

Read model:
    cart/<id>   {"status": "open", "items": {"<sku>": {"quantity": 2, "unit_price_cents": 50}}}
    day/<date>  {"day": "2026-12-07", "carts_opened": 2, "carts_checked_out": 1,
                 "carts_abandoned": 0, "items_sold": 3, "revenue_cents": 590}
"""

import re

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import read_model
from wit_world.imports.types import ErrorKind, Info, ProjectionError

import exact_json

HANDLES = ["CartOpened", "ItemAdded", "ItemRemoved", "QuantityChanged", "CheckedOut", "CartAbandoned"]
INFO = Info(name="cart-daily-totals-py", version="0.1.0", sources=["cart"], handles=HANDLES)

U64_MAX = 2**64 - 1
I64 = range(-(2**63), 2**63)
STATUS_NAMES = {"open": "open", "checked_out": "checked out", "abandoned": "abandoned"}
# The append time, RFC 3339 in UTC as the host writes it: its date is the day.
TIMESTAMP = re.compile(r"(\d{4}-\d{2}-\d{2})[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]00:00)")


class Rejected(Exception):
    """An event refused: `kind` is the WIT error kind."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind
        self.message = message


def invalid(message):
    return Rejected(ErrorKind.INVALID_DATA, message)


def rule(message):
    return Rejected(ErrorKind.RULE_VIOLATION, message)


def bad_document(key, message):
    return Rejected(ErrorKind.INVALID_DOCUMENT, f"{key}: {message}")


def debug_str(s):
    """A string quoted as Rust's `{:?}` quotes it (for the usual SKUs)."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


# Payloads are read as the cart reducer reads them (plugins/cart, plugins/cart-py):
# an object with the listed fields (others ignored, a repeated one refused) or an
# array of them in order; strings as strings, integers as 64-bit signed integers
# (`2.0`, `"2"` refused).


class Obj(dict):
    """A JSON object that remembers the keys it had more than once."""

    def __init__(self, pairs):
        super().__init__(pairs)
        self.repeated = set()
        if len(self) != len(pairs):
            seen = set()
            for key, _ in pairs:
                if key in seen:
                    self.repeated.add(key)
                seen.add(key)


_DECODE = exact_json.decoder(object_pairs_hook=Obj).decode


def payload(event, fields):
    """`event.data` as {field: value} for `fields` {name: (type, required)}."""
    try:
        data = exact_json.loads(event.data, decode=_DECODE)
    except exact_json.JsonError as err:
        raise invalid(str(err)) from None
    if isinstance(data, list):
        if len(data) != len(fields):
            raise invalid(f"invalid length {len(data)}, expected struct {event.event_type} with {len(fields)} elements")
        data = Obj(list(zip(fields, data)))
    if not isinstance(data, Obj):
        raise invalid(f"invalid type, expected struct {event.event_type}")
    for key in data.repeated:
        if key in fields:
            raise invalid(f"duplicate field `{key}`")
    values = {}
    for key, (kind, required) in fields.items():
        value = data.get(key)
        if value is None:
            if required:
                raise invalid(f"missing field `{key}`")
        elif kind == "string" and not isinstance(value, str):
            raise invalid(f"{key}: invalid type, expected a string")
        elif kind == "i64" and not (type(value) is int and value in I64):
            raise invalid(f"{key}: invalid type, expected i64")
        values[key] = value
    return values


def day_of(timestamp):
    match = TIMESTAMP.fullmatch(timestamp)
    if match is None:
        raise invalid(f"timestamp {debug_str(timestamp)} is not an RFC 3339 time in UTC")
    return match.group(1)


def positive(field, value):
    if value <= 0:
        raise rule(f"{field} must be at least 1, not {value}")
    return value


def u64(value):
    return type(value) is int and 0 <= value <= U64_MAX


# The documents: read and checked (invalid-document), written back in key order.


def get_object(key):
    text = read_model.get(key)
    if text is None:
        return None
    try:
        value = exact_json.loads(text)
    except exact_json.JsonError as err:
        raise bad_document(key, str(err)) from None
    if not isinstance(value, dict):
        raise bad_document(key, "not a JSON object")
    return value


def get_cart(key):
    cart = get_object(key)
    if cart is None:
        return None
    if cart.get("status") not in STATUS_NAMES:
        raise bad_document(key, "field `status` is not open, checked_out or abandoned")
    items = cart.get("items")
    if not isinstance(items, dict):
        raise bad_document(key, "field `items` is not an object")
    for sku, line in items.items():
        if not (isinstance(line, dict) and u64(line.get("quantity")) and u64(line.get("unit_price_cents"))):
            raise bad_document(key, f"items.{sku} is not a line")
    return {"status": cart["status"], "items": {sku: dict(line) for sku, line in items.items()}}


def put_cart(key, cart):
    items = cart["items"]
    read_model.put(key, exact_json.dumps({"status": cart["status"], "items": {sku: items[sku] for sku in sorted(items)}}))


COUNTERS = ["carts_opened", "carts_checked_out", "carts_abandoned", "items_sold", "revenue_cents"]


def count(day, **added):
    """Adds `added` to the counters of `day/<day>`."""
    key = f"day/{day}"
    doc = get_object(key)
    if doc is None:
        doc = {"day": day, **{name: 0 for name in COUNTERS}}
    elif not all(u64(doc.get(name)) for name in COUNTERS):
        raise bad_document(key, "its counters are not all unsigned integers")
    for name, n in added.items():
        doc[name] += n
    read_model.put(key, exact_json.dumps({"day": day, **{name: doc[name] for name in COUNTERS}}))


def totals(items):
    """(units, cents) of a cart's lines: the cart reducer's `item_count` and `total_cents`."""
    units = sum(line["quantity"] for line in items.values())
    cents = sum(line["quantity"] * line["unit_price_cents"] for line in items.values())
    if units > U64_MAX or cents > U64_MAX:
        raise rule("the cart's totals would overflow")
    return units, cents


def open_cart(cart, action):
    """The cart, if it is open: the cart reducer's rule."""
    if cart is None:
        raise rule(f"cannot {action} a cart before CartOpened")
    if cart["status"] != "open":
        raise rule(f"cannot {action} a cart that is {STATUS_NAMES[cart['status']]}")
    return cart


def line_of(cart, sku):
    line = cart["items"].get(sku)
    if line is None:
        raise rule(f"sku {debug_str(sku)} is not in the cart")
    return line


def apply_one(event):
    kind = event.event_type
    day = day_of(event.timestamp)
    key = f"cart/{event.aggregate_id}"
    if kind == "CartOpened":
        payload(event, {"customer": ("string", True)})
        cart = get_cart(key)
        if cart is not None:
            raise rule(f"the cart is already {STATUS_NAMES[cart['status']]}")
        put_cart(key, {"status": "open", "items": {}})
        count(day, carts_opened=1)
    elif kind == "ItemAdded":
        data = payload(
            event,
            {
                "sku": ("string", True),
                "name": ("string", True),
                "quantity": ("i64", True),
                "unit_price_cents": ("i64", True),
            },
        )
        cart = open_cart(get_cart(key), "add items to")
        quantity = positive("quantity", data["quantity"])
        price = data["unit_price_cents"]
        if price < 0:
            raise rule("unit_price_cents cannot be negative")
        sku = data["sku"]
        line = cart["items"].get(sku)
        if line is None:
            line = cart["items"][sku] = {"quantity": 0, "unit_price_cents": price}
        elif line["unit_price_cents"] != price:
            raise rule(f"sku {debug_str(sku)} is in the cart at {line['unit_price_cents']} cents, not {price}")
        line["quantity"] += quantity
        if line["quantity"] * price > U64_MAX:
            raise rule("the cart's totals would overflow")
        totals(cart["items"])
        put_cart(key, cart)
    elif kind == "ItemRemoved":
        data = payload(event, {"sku": ("string", True), "quantity": ("i64", False)})
        cart = open_cart(get_cart(key), "remove items from")
        sku = data["sku"]
        line = line_of(cart, sku)
        left = 0
        if data["quantity"] is not None:
            quantity = positive("quantity", data["quantity"])
            if quantity > line["quantity"]:
                raise rule(f"cannot remove {quantity} of sku {debug_str(sku)}: the cart holds {line['quantity']}")
            left = line["quantity"] - quantity
        if left > 0:
            line["quantity"] = left
        else:
            del cart["items"][sku]
        put_cart(key, cart)
    elif kind == "QuantityChanged":
        data = payload(event, {"sku": ("string", True), "quantity": ("i64", True)})
        cart = open_cart(get_cart(key), "change quantities in")
        quantity = positive("quantity", data["quantity"])
        line = line_of(cart, data["sku"])
        line["quantity"] = quantity
        if quantity * line["unit_price_cents"] > U64_MAX:
            raise rule("the cart's totals would overflow")
        totals(cart["items"])
        put_cart(key, cart)
    elif kind == "CheckedOut":
        cart = open_cart(get_cart(key), "check out")
        if not cart["items"]:
            raise rule("cannot check out an empty cart")
        units, cents = totals(cart["items"])
        cart["status"] = "checked_out"
        put_cart(key, cart)
        count(day, carts_checked_out=1, items_sold=units, revenue_cents=cents)
    elif kind == "CartAbandoned":
        cart = open_cart(get_cart(key), "abandon")
        cart["status"] = "abandoned"
        put_cart(key, cart)
        count(day, carts_abandoned=1)
    # Any other type is not in `handles`: the host never passes it.


class Projection(exports.Projection):
    def info(self) -> Info:
        return INFO

    def apply(self, events) -> None:
        for index, event in enumerate(events):
            try:
                apply_one(event)
            except Rejected as r:
                raise Err(ProjectionError(r.kind, index, r.message))
