/**
 * Every GraphQL document the explorer sends, in one module without imports, so that tools can
 * load it too: the schema checks (`tools/schema`) run a code generator over these documents
 * against `schema.graphql`, so that a schema change that would break the page fails CI.
 */

/** The fields every tree row, search result and link needs (cheap: no payloads). */
export const SUMMARY = `fragment Summary on AuditEvent {
  eventId eventType eventCategory eventAction eventOutcome actorType actorId
  correlationId parentEventId eventTimestamp durationMs severity childCount
}`;

/** Every column of an event, for the detail pane. */
export const FULL = `fragment Full on AuditEvent {
  eventId eventVersion eventTimestamp eventDate eventType eventCategory eventAction eventOutcome
  actorType actorId actorIp resourceType resourceId resourceName correlationId parentEventId
  parentEventDate traceId spanId namespace clusterId severity durationMs errorCode errorMessage
  retentionDays isSensitive eventHash previousEventHash hashAlgorithm hashKeyId chainSeq chainNote
  legalHold legalHoldReason legalHoldPlacedBy legalHoldPlacedAt submittedBy childCount depth
  eventData eventMetadata
}`;

/** The selection a live tree message needs to place an event (see live.js). */
export const SUMMARY_FIELDS = SUMMARY.slice(SUMMARY.indexOf('{') + 1, SUMMARY.lastIndexOf('}')).trim();

/** One event's summary with its depth and root. */
export const PLACE = `query Place($id: UUID!) { auditEvent(eventId: $id) { ...Summary depth root { ...Summary } } } ${SUMMARY}`;

/** The path from the root down to an event's parent. */
export const PATH = `query Path($id: UUID!) { auditEvent(eventId: $id) { ancestors { ...Summary } } } ${SUMMARY}`;

/** Every field of an event, its parent, root and first 50 children. */
export const DETAIL = `query Detail($id: UUID!) { auditEvent(eventId: $id) {
  ...Full
  parent { ...Summary }
  root { ...Summary }
  children(first: 50) { totalCount nodes { ...Summary } }
} } ${FULL} ${SUMMARY}`;

/** A causality tree, breadth-first. */
export const TREE = `query Tree($c: String, $r: UUID, $d: Int, $n: Int) {
  causalityTree(correlationId: $c, rootEventId: $r, maxDepth: $d, maxNodes: $n) {
    truncated missingParentEventIds maxDepth
    nodes { depth parentEventId event { ...Summary } }
  }
} ${SUMMARY}`;

/** Where the commit order stands now. */
export const LIVE_CURSOR = 'query LiveCursor { liveCursor }';

/** One page of an event's children, oldest first. */
export const CHILDREN = `query Children($id: UUID!, $first: Int, $after: String) { auditEvent(eventId: $id) {
  childCount
  children(first: $first, after: $after) {
    edges { cursor node { ...Summary } }
    pageInfo { hasNextPage endCursor }
  }
} } ${SUMMARY}`;

/** One page of events matching a filter, newest first. */
export const SEARCH = `query Search($f: AuditEventFilter, $first: Int, $after: String) {
  auditEvents(filter: $f, first: $first, after: $after) {
    totalCount
    nodes { ...Summary }
    pageInfo { hasNextPage endCursor }
  }
} ${SUMMARY}`;

/** The live tree: changes below a root or in a correlation, in commit order. */
export const LIVE = `subscription Live($c: String, $r: UUID, $after: String) {
  causalityTreeChanged(correlationId: $c, rootEventId: $r, after: $after) {
    cursor depth parentEventId event { ...Summary }
  }
} ${SUMMARY}`;
