/**
 * GraphQL over HTTP for the explorer: one `gql()` helper that posts `{query, variables}` to
 * `/graphql` with the token the user entered, the queries the views need, and the bookkeeping
 * the browser tests watch (`window.explorerIdle` is true exactly when no request is in flight).
 *
 * Errors come back as `ApiError` carrying the first GraphQL error's message and
 * `extensions.code` (`UNAUTHENTICATED`, `NOT_FOUND`, …), or `NETWORK` when the server cannot be
 * reached at all.
 */

import { CHILDREN, DETAIL, LIVE_CURSOR, PATH, PLACE, SEARCH, TREE } from '/explorer/documents.js';

const TOKEN_KEY = 'auditgraph.explorer.token';

/** Largest page the server accepts for `first`. */
export const MAX_PAGE = 1000;

/** A failed request: the server's first error, or a transport failure. */
export class ApiError extends Error {
  constructor(message, code, extensions = {}) {
    super(message);
    this.name = 'ApiError';
    this.code = code || 'ERROR';
    this.extensions = extensions;
  }
}

// --- The token (per tab: sessionStorage) ---------------------------------------------------

export function getToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || '';
  } catch {
    return '';
  }
}

export function setToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // Storage may be disabled; the token then lives only as long as the field's value.
  }
}

/** The `Authorization` value for the current token, or null without one. */
export function authorization() {
  const token = getToken().trim();
  if (!token) return null;
  return /^bearer\s/i.test(token) ? token : `Bearer ${token}`;
}

// --- Busy tracking ---------------------------------------------------------------------------

let inFlight = 0;
const busyListeners = new Set();

/** Counts work in flight (requests, navigations); `window.explorerIdle` mirrors it. */
export function busy(delta) {
  inFlight = Math.max(0, inFlight + delta);
  window.explorerIdle = inFlight === 0;
  for (const listener of busyListeners) listener(inFlight > 0);
}

/** Calls `listener(isBusy)` whenever the count changes. */
export function onBusy(listener) {
  busyListeners.add(listener);
}

// --- Requests --------------------------------------------------------------------------------

/** Runs one GraphQL operation and returns its `data`, or throws an `ApiError`. */
export async function gql(query, variables = {}) {
  busy(+1);
  try {
    const headers = { 'content-type': 'application/json', accept: 'application/json' };
    const auth = authorization();
    if (auth) headers.authorization = auth;
    let response;
    try {
      response = await fetch('/graphql', {
        method: 'POST',
        headers,
        body: JSON.stringify({ query, variables }),
        credentials: 'same-origin',
      });
    } catch (error) {
      throw new ApiError(`cannot reach the server (${error.message})`, 'NETWORK');
    }
    let body;
    try {
      body = await response.json();
    } catch {
      throw new ApiError(`the server answered ${response.status} without a GraphQL response`, `HTTP_${response.status}`);
    }
    if (body.errors && body.errors.length) {
      const first = body.errors[0];
      const extensions = first.extensions || {};
      throw new ApiError(first.message, extensions.code || `HTTP_${response.status}`, extensions);
    }
    if (!response.ok || body.data == null) {
      throw new ApiError(`the server answered ${response.status} without data`, `HTTP_${response.status}`);
    }
    return body.data;
  } finally {
    busy(-1);
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(text) {
  return UUID.test(text);
}

/** One event's summary with its root and depth, or null when there is none. */
export async function fetchEventPlace(eventId) {
  const data = await gql(
    PLACE,
    { id: eventId },
  );
  return data.auditEvent;
}

/** The path from the root down to the event's parent (root first). */
export async function fetchAncestors(eventId) {
  const data = await gql(
    PATH,
    { id: eventId },
  );
  return data.auditEvent ? data.auditEvent.ancestors : [];
}

/** Every field of an event, its parent, root and first 50 children; null when there is none. */
export async function fetchDetail(eventId) {
  const data = await gql(
    DETAIL,
    { id: eventId },
  );
  return data.auditEvent;
}

/**
 * A causality tree, breadth-first: `scope` is `{correlationId}` or `{rootEventId}`.
 * Returns `{nodes: [{depth, parentEventId, event}], truncated, missingParentEventIds}`.
 */
export async function fetchTree(scope, maxDepth, maxNodes) {
  const data = await gql(
    TREE,
    { c: scope.correlationId ?? null, r: scope.rootEventId ?? null, d: maxDepth, n: maxNodes },
  );
  return data.causalityTree;
}

/**
 * Where the commit order stands now: a subscription from this cursor receives every event
 * committed after this call, however late it starts. Null when the server cannot say.
 */
export async function fetchLiveCursor() {
  try {
    const data = await gql(LIVE_CURSOR);
    return data.liveCursor;
  } catch {
    return null;
  }
}

/** One page of an event's children, oldest first: `{childCount, edges, pageInfo}` or null. */
export async function fetchChildren(eventId, first, after) {
  const data = await gql(
    CHILDREN,
    { id: eventId, first, after: after ?? null },
  );
  const event = data.auditEvent;
  return event && { childCount: event.childCount, ...event.children };
}

/** One page of events matching a filter, newest first. */
export async function searchEvents(filter, first, after) {
  const data = await gql(
    SEARCH,
    { f: filter, first, after: after ?? null },
  );
  return data.auditEvents;
}
