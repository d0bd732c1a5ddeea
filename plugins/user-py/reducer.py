"""The seed document's `user` aggregate, in Python: the same reducer as
plugins/user (Rust), state for state and error for error. See README.md.

componentize-py builds this module into a component of the world `plugin`
(wit/reducer.wit): the class `Reducer` implements the exported interface
`reducer` (its `info`), and the class `Aggregate` its resource `aggregate`.
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import reducer as reducer_exports
from wit_world.imports.types import ErrorKind, Info, ReducerError

import exact_json

INFO = Info(
    name="user-py",
    version="0.1.0",
    aggregate_type="user",
    handles=["UserCreated", "EmailChanged", "NameChanged"],
)

# Per event type: the state keys it sets and, in the same order, the data fields
# they come from.
CHANGES = {
    "UserCreated": (("id", "name", "email", "created_at"), ("id", "name", "email", "timestamp")),
    "EmailChanged": (("email", "email_updated_at"), ("email", "timestamp")),
    "NameChanged": (("name",), ("name",)),
}


def rejection(kind, index, message):
    """A refusal: the WIT `reducer-error`, raised as the `err` of the result."""
    return Err(ReducerError(kind=kind, event_index=index, message=message))


class Reducer(exports.Reducer):
    def info(self) -> Info:
        return INFO


class Aggregate(reducer_exports.Aggregate):
    def __init__(self, id: str) -> None:
        # The empty state; a dict keeps its keys in insertion order, as in the seed.
        self.fields = {}

    def restore(self, snapshot: str) -> None:
        try:
            value = exact_json.loads(snapshot)
        except exact_json.JsonError as err:
            raise rejection(ErrorKind.INVALID_SNAPSHOT, None, f"cannot read the snapshot: {err}")
        if not isinstance(value, dict):
            raise rejection(ErrorKind.INVALID_SNAPSHOT, None, "cannot read the snapshot: not a JSON object")
        self.fields = value

    def apply(self, events) -> None:
        fields = self.fields
        loads = exact_json.loads
        for index, event in enumerate(events):
            changes = CHANGES.get(event.event_type)
            if changes is None:
                continue  # not in `handles`: the host skips these
            keys, names = changes
            try:
                data = loads(event.data)
            except exact_json.JsonError as err:
                raise rejection(ErrorKind.INVALID_DATA, index, str(err))
            if not isinstance(data, dict):
                raise rejection(ErrorKind.INVALID_DATA, index, "expected a JSON object")
            # Read every field first: a missing one refuses the event before any change.
            try:
                values = [data[name] for name in names]
            except KeyError:
                missing = next(name for name in names if name not in data)
                raise rejection(ErrorKind.INVALID_DATA, index, f'field "{missing}" is missing') from None
            fields.update(zip(keys, values))

    def state(self) -> str:
        return exact_json.dumps(self.fields)
