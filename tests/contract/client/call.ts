// One real call through a client typed by the served OpenAPI document.
//
// tests/contract/run generates schema.d.ts from GET /v1/openapi.json (openapi-typescript),
// compiles this file with tsc (strict) and runs it with node against the server it
// seeded: user 1 has events. Every field read below is typed by the document, so a
// path, parameter or field that the document drops or retypes fails the compile,
// and a server that answers otherwise than it documents fails the run.
//
// Environment: SF_URL (the server, e.g. http://127.0.0.1:8080) and SF_TOKEN (a
// bearer token with the read role).

import createClient from "openapi-fetch";
import type { paths } from "./schema.js";

// Node's `process`, as much of it as this file uses (no @types/node needed).
declare const process: { env: Record<string, string | undefined>; exitCode?: number };

// The types of the answer, taken from the operation (not from component names, which
// may be renamed without changing the API).
type HistoryPage =
  paths["/v1/aggregates/{type}/{id}/events"]["get"]["responses"][200]["content"]["application/json"];
type RecordedEvent = HistoryPage["events"][number];

function need(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

const client = createClient<paths>({
  baseUrl: need("SF_URL"),
  headers: { Authorization: `Bearer ${need("SF_TOKEN")}` },
});

const { data, error, response } = await client.GET("/v1/aggregates/{type}/{id}/events", {
  params: {
    path: { type: "user", id: "1" },
    query: { from_revision: 1, limit: 100 },
  },
});

if (error !== undefined || data === undefined) {
  throw new Error(
    `GET ${response.url} answered ${response.status}: ${JSON.stringify(error)}`,
  );
}

const page: HistoryPage = data;
const events: RecordedEvent[] = page.events;
const next: number | null | undefined = page.next_from_revision;
const first = events[0];
if (first === undefined) {
  throw new Error(`user 1 has no events in ${JSON.stringify(page)}`);
}

const aggregateType: string = first.aggregate_type;
const aggregateId: string = first.aggregate_id;
const eventType: string = first.event_type;
const revision: number = first.revision;
const position: string = first.position;
const problems: string[] = [];
if (aggregateType !== "user") problems.push(`aggregate_type is ${JSON.stringify(aggregateType)}, not "user"`);
if (aggregateId !== "1") problems.push(`aggregate_id is ${JSON.stringify(aggregateId)}, not "1"`);
if (revision !== 1) problems.push(`the first event's revision is ${revision}, not 1`);
if (eventType !== "UserCreated") problems.push(`the first event is ${JSON.stringify(eventType)}, not "UserCreated"`);
if (!/^\d+-\d+$/.test(position)) problems.push(`position ${JSON.stringify(position)} is not a stream id`);
if (problems.length > 0) {
  throw new Error(`GET /v1/aggregates/user/1/events: ${problems.join("; ")}`);
}

console.log(
  `typed call: GET /v1/aggregates/user/1/events -> ${response.status}, ${events.length} events, ` +
    `first ${eventType} of ${aggregateType}/${aggregateId} at revision ${revision}, next_from_revision ${next ?? null}`,
);
