"""schemathesis hooks for tests/contract/run (loaded through SCHEMATHESIS_HOOKS).

The plugin routes, POST /v1/plugins and POST /v1/plugins/verify, take a reducer
component's bytes as `application/wasm` (POST /v1/projections a projection's:
CONTRACT_PROJECTION_WASM, the email-domains example), a media type schemathesis has no serializer
for. This module registers one:

- The document can only say "binary" (`type: string, format: binary`), so for it any
  bytes are a valid body, while the server rightly refuses whatever is not a reducer
  component (400 `invalid-plugin`). A body generated as schema-valid ("positive") is
  therefore sent as a real component, the seeded `user` reducer (the file named by
  CONTRACT_WASM): the positive cases reach registration and verification, and their
  answers are checked against the document. (Registering it again changes nothing:
  same digest, same reducer.)
- A body generated as schema-violating ("negative", e.g. a number or an object in
  place of bytes) is sent as generated, like schemathesis does for
  `application/octet-stream`, and the server must refuse it.

It is done while serializing, not in a `map_case` hook: schemathesis re-validates a
body that a hook changed, and it cannot validate bytes, so it would then take the
case for a negative one.
"""

import os

import schemathesis
from schemathesis.core.parameters import ParameterLocation
from schemathesis.transport.serialization import serialize_binary

with open(os.environ["CONTRACT_WASM"], "rb") as f:
    COMPONENT = f.read()
# POST /v1/projections takes a projection component (the email-domains example).
with open(os.environ["CONTRACT_PROJECTION_WASM"], "rb") as f:
    PROJECTION = f.read()


@schemathesis.serializer("application/wasm")
def wasm(ctx, value):
    meta = ctx.case.meta
    body = meta.components.get(ParameterLocation.BODY) if meta is not None else None
    if body is not None and body.mode.is_positive:
        if ctx.case.operation.path.startswith("/v1/projections"):
            return PROJECTION
        return COMPONENT
    return serialize_binary(value)
