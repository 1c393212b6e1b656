/**
 * A minimal client of the `graphql-transport-ws` protocol for one subscription:
 * `causalityTreeChanged` on the tree being viewed.
 *
 * connect → `connection_init` (with the token, as browsers cannot set headers on a WebSocket)
 * → `connection_ack` → `subscribe`. Every `next` carries a `cursor`; the last one is kept, and
 * after a dropped connection, a `SUBSCRIPTION_LAGGED` error or a server shutdown the client
 * subscribes again with `after: cursor`, so the server replays what was missed: nothing lost,
 * nothing twice. Reconnects back off from 1 s to 30 s. Credentials refused (close 4401/4403 or
 * an `UNAUTHENTICATED`/`FORBIDDEN` error) stop the retries until `start()` is called again
 * (the page does so when a new token is entered).
 */

import { authorization } from '/explorer/api.js';
import { LIVE } from '/explorer/documents.js';

const PROTOCOL = 'graphql-transport-ws';
const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 30000;

/** Codes after which retrying with the same credentials is pointless. */
const FATAL_CODES = new Set(['UNAUTHENTICATED', 'FORBIDDEN', 'BAD_USER_INPUT', 'BAD_REQUEST', 'NOT_FOUND']);

export class LiveTree {
  /**
   * @param {object} handlers
   * @param {(change: object) => void} handlers.onChange  one `causalityTreeChanged` payload
   * @param {(status: 'live'|'offline', why: string) => void} handlers.onStatus
   * @param {(message: string, code: string) => void} handlers.onError  a refusal worth showing
   */
  constructor({ onChange, onStatus, onError }) {
    this.onChange = onChange;
    this.onStatus = onStatus;
    this.onError = onError;
    this.scope = null;
    this.socket = null;
    this.cursor = null;
    this.opId = 0;
    this.backoff = BACKOFF_MIN_MS;
    this.retryTimer = null;
    this.status = 'offline';
  }

  /**
   * Watches `scope` (`{correlationId}` or `{rootEventId}`) from `cursor` (a `liveCursor` read
   * before the tree was, so that nothing written in between is missed), or from now.
   */
  start(scope, cursor = null) {
    this.stop();
    this.scope = scope;
    this.cursor = cursor;
    this.backoff = BACKOFF_MIN_MS;
    this.connect();
  }

  /** Stops watching; the indicator goes offline. */
  stop() {
    this.scope = null;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.socket) {
      const socket = this.socket;
      this.socket = null;
      socket.onclose = socket.onmessage = socket.onerror = socket.onopen = null;
      socket.close(1000, 'done');
    }
    this.setStatus('offline', 'not watching a tree');
  }

  setStatus(status, why) {
    this.status = status;
    this.onStatus(status, why);
  }

  connect() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    let socket;
    try {
      socket = new WebSocket(`${scheme}//${location.host}/graphql`, PROTOCOL);
    } catch (error) {
      this.retry(`cannot open a WebSocket: ${error.message}`);
      return;
    }
    this.socket = socket;
    this.setStatus('offline', 'connecting…');
    socket.onopen = () => {
      const auth = authorization();
      this.send({ type: 'connection_init', payload: auth ? { Authorization: auth } : {} });
    };
    socket.onmessage = (message) => this.receive(message.data);
    socket.onclose = (close) => {
      this.socket = null;
      if (close.code === 4401 || close.code === 4403) {
        this.fail(close.code === 4401 ? 'UNAUTHENTICATED' : 'FORBIDDEN',
          `live updates refused: ${close.reason || 'credentials missing or not valid'}`);
      } else {
        this.retry(`connection closed (${close.code}${close.reason ? `: ${close.reason}` : ''})`);
      }
    };
  }

  send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  subscribe() {
    this.opId += 1;
    const variables = {
      c: this.scope.correlationId ?? null,
      r: this.scope.rootEventId ?? null,
      after: this.cursor,
    };
    this.send({ id: `t${this.opId}`, type: 'subscribe', payload: { query: LIVE, variables } });
    this.setStatus('live', 'subscribed');
  }

  receive(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    const current = message.id === `t${this.opId}`;
    switch (message.type) {
      case 'connection_ack':
        this.backoff = BACKOFF_MIN_MS;
        this.subscribe();
        break;
      case 'ping':
        this.send({ type: 'pong' });
        break;
      case 'next':
        if (current) this.next(message.payload || {});
        break;
      case 'error': {
        // The operation did not validate: retrying would not help.
        const first = (message.payload && message.payload[0]) || {};
        if (current) this.fail((first.extensions && first.extensions.code) || 'ERROR', first.message || 'subscription refused');
        break;
      }
      case 'complete':
        // The server ended the subscription (after an error with a cursor, or shutting down):
        // take it up again where it stopped.
        if (current && this.scope) this.resubscribeSoon('subscription ended');
        break;
      default:
        break;
    }
  }

  next(payload) {
    const change = payload.data && payload.data.causalityTreeChanged;
    if (change) {
      this.cursor = change.cursor;
      this.backoff = BACKOFF_MIN_MS;
      this.onChange(change);
      return;
    }
    const error = (payload.errors && payload.errors[0]) || {};
    const extensions = error.extensions || {};
    if (extensions.resumeAfter) this.cursor = extensions.resumeAfter;
    if (FATAL_CODES.has(extensions.code)) {
      this.fail(extensions.code, `live updates refused: ${error.message}`);
    }
    // Others (SUBSCRIPTION_LAGGED, SHUTTING_DOWN, limits) are followed by `complete`.
  }

  /** Subscribes again on this connection after a short pause (or reconnects if it is gone). */
  resubscribeSoon(why) {
    this.setStatus('offline', why);
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      if (!this.scope) return;
      if (this.socket && this.socket.readyState === WebSocket.OPEN) this.subscribe();
      else if (!this.socket) this.connect();
    }, this.backoff);
    this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
  }

  /** Reconnects after the current backoff, resuming after the last cursor. */
  retry(why) {
    if (!this.scope) return;
    const seconds = Math.round(this.backoff / 1000);
    this.setStatus('offline', `${why}; retrying in ${seconds} s`);
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      if (this.scope && !this.socket) this.connect();
    }, this.backoff);
    this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
  }

  /** Gives up until `start()`: the credentials or the request are wrong. */
  fail(code, message) {
    this.stop();
    this.setStatus('offline', message);
    this.onError(message, code);
  }
}
