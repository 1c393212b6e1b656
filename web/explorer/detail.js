/**
 * The detail pane: every field of the selected event (each in an element with
 * `data-field="<camelCaseName>"` holding the value), its `eventData` and `eventMetadata` as
 * pretty-printed JSON, and links to its parent, its root and its first 50 children. Links are
 * plain `#/event/<id>` anchors: following one selects the event (loading its tree if needed),
 * and Back returns.
 */

/** The fields shown, in order, grouped under headings. */
const GROUPS = [
  ['Event', ['eventId', 'eventType', 'eventCategory', 'eventAction', 'eventOutcome', 'severity',
    'eventTimestamp', 'eventDate', 'durationMs', 'errorCode', 'errorMessage', 'eventVersion']],
  ['Actor and resource', ['actorType', 'actorId', 'actorIp', 'submittedBy', 'resourceType',
    'resourceId', 'resourceName']],
  ['Causality', ['correlationId', 'parentEventId', 'parentEventDate', 'depth', 'childCount',
    'traceId', 'spanId', 'namespace', 'clusterId']],
  ['Retention and integrity', ['retentionDays', 'isSensitive', 'legalHold', 'legalHoldReason',
    'legalHoldPlacedBy', 'legalHoldPlacedAt', 'chainSeq', 'hashAlgorithm', 'hashKeyId', 'eventHash',
    'previousEventHash', 'chainNote']],
];

function element(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined && text !== null) el.textContent = text;
  return el;
}

/** A link to another event, labelled with its type and outcome. */
function eventLink(event, testid) {
  const link = element('a', `event-link outcome-${event.eventOutcome}`);
  link.href = `#/event/${event.eventId}`;
  link.dataset.testid = testid;
  link.dataset.eventId = event.eventId;
  link.append(element('span', 'dot'), element('span', 'type', event.eventType),
    element('span', 'muted', ` ${clockOf(event.eventTimestamp)}`));
  link.title = event.eventId;
  return link;
}

/** `camelCase` → `camel case`, for labels. */
function label(name) {
  return name.replace(/([A-Z])/g, ' $1').toLowerCase();
}

/** A field's value as text; null stays empty (the stylesheet shows a dash). */
function valueText(value) {
  if (value === null || value === undefined) return '';
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

/** Shows "loading" in the pane while the event is fetched. */

/** `02:30:42.628` (UTC), whatever the precision the server wrote. */
function clockOf(timestamp) {
  const date = new Date(timestamp);
  return Number.isNaN(date.getTime()) ? timestamp : date.toISOString().slice(11, 23);
}

export function renderLoading(pane, eventId) {
  pane.replaceChildren(element('p', 'muted', `loading ${eventId}…`));
}

/**
 * Fills `pane` with `event` (the answer of `fetchDetail`). `onClose` is called by the close
 * button.
 */
export function renderDetail(pane, event, { onClose }) {
  const header = element('div', 'detail-head');
  const title = element('h2', `outcome-${event.eventOutcome}`);
  title.append(element('span', 'dot'), element('span', null, event.eventType));
  const close = element('button', 'icon', '×');
  close.type = 'button';
  close.title = 'Close details (Escape)';
  close.setAttribute('aria-label', 'Close details');
  close.addEventListener('click', onClose);
  header.append(title, close);

  const links = element('div', 'detail-links');
  if (event.parent) {
    links.append(element('span', 'muted', 'parent '), eventLink(event.parent, 'link-parent'));
  }
  if (event.root) {
    const self = event.root.eventId === event.eventId;
    links.append(element('span', 'muted', self ? 'root (this event) ' : 'root '), eventLink(event.root, 'link-root'));
  }

  const sections = [header, links];
  for (const [heading, names] of GROUPS) {
    sections.push(element('h3', null, heading));
    const list = element('dl', 'fields');
    for (const name of names) {
      const value = event[name];
      const dd = element('dd', value === null || value === undefined ? 'null' : null, valueText(value));
      dd.dataset.field = name;
      if (name === 'eventOutcome') dd.classList.add(`outcome-${value}`);
      if (name === 'eventTimestamp' || name === 'legalHoldPlacedAt') {
        const ms = Date.parse(value);
        if (Number.isFinite(ms)) dd.title = `${new Date(ms).toString()}`;
      }
      list.append(element('dt', null, label(name)), dd);
    }
    sections.push(list);
  }

  sections.push(element('h3', null, 'Event data'));
  const data = element('pre', 'json', JSON.stringify(event.eventData, null, 2));
  data.dataset.testid = 'event-data';
  data.dataset.field = 'eventData';
  sections.push(data);
  sections.push(element('h3', null, 'Event metadata'));
  const metadata = element('pre', event.eventMetadata == null ? 'json null' : 'json',
    event.eventMetadata == null ? '' : JSON.stringify(event.eventMetadata, null, 2));
  metadata.dataset.field = 'eventMetadata';
  sections.push(metadata);

  const children = event.children || { nodes: [], totalCount: 0 };
  const shown = children.nodes.slice(0, 50);
  sections.push(element('h3', null, children.totalCount > shown.length
    ? `Children (first ${shown.length} of ${children.totalCount})`
    : `Children (${children.totalCount})`));
  const list = element('ul', 'children');
  for (const child of shown) {
    const item = element('li');
    item.append(eventLink(child, 'link-child'));
    list.append(item);
  }
  sections.push(list);
  pane.replaceChildren(...sections);
}
