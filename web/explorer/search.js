/**
 * Finding events: the search form and the result list.
 *
 * The form's `q` takes a correlation id or an event id (a UUID that `auditEvent` finds opens the
 * event, anything else is taken as a correlation id); the other inputs are the `auditEvents`
 * filters. A search is a route, `#/search?<filters>&after=<cursor>`, so that results can be
 * linked and Back/Forward walk through pages.
 */

import { fetchEventPlace, isUuid, searchEvents } from '/explorer/api.js';

/** The filter inputs, named as the fields of `AuditEventFilter`. */
const SEVERITIES = new Set(['info', 'warning', 'error', 'critical']);

/** `2026-12-06 02:30:42.628` in UTC, whatever the precision the server wrote. */
function formatTime(timestamp) {
  const date = new Date(timestamp);
  return Number.isNaN(date.getTime()) ? timestamp : date.toISOString().replace('T', ' ').slice(0, 23);
}

export const FILTER_FIELDS = ['eventTypePrefix', 'eventCategory', 'eventOutcome', 'severity', 'since', 'until'];

const PAGE_SIZE = 50;

const PLACEHOLDERS = {
  q: 'correlation id or event id',
  eventTypePrefix: 'type prefix (gateway.)',
  eventCategory: 'category',
  eventOutcome: 'outcome',
  severity: 'severity',
  since: 'since (30m, 24h, 7d, date)',
  until: 'until',
};

const SUGGESTIONS = {
  eventOutcome: ['success', 'failure', 'pending'],
  severity: ['info', 'warning', 'error', 'critical'],
};

function element(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

/**
 * Builds the search form. `onSubmit({q, params})` receives the trimmed `q` and the filters as
 * `URLSearchParams`.
 */
export function buildSearchForm(onSubmit) {
  const form = element('form', 'search');
  form.dataset.testid = 'search';
  form.setAttribute('role', 'search');
  form.noValidate = true;
  for (const name of ['q', ...FILTER_FIELDS]) {
    const input = element('input');
    input.name = name;
    input.type = name === 'q' ? 'search' : 'text';
    input.placeholder = PLACEHOLDERS[name];
    input.setAttribute('aria-label', PLACEHOLDERS[name]);
    input.autocomplete = 'off';
    input.spellcheck = false;
    if (SUGGESTIONS[name]) {
      const list = element('datalist');
      list.id = `suggest-${name}`;
      for (const value of SUGGESTIONS[name]) {
        const option = element('option');
        option.value = value;
        list.append(option);
      }
      input.setAttribute('list', list.id);
      form.append(list);
    }
    form.append(input);
  }
  const roots = element('label', 'check');
  const rootsOnly = element('input');
  rootsOnly.type = 'checkbox';
  rootsOnly.name = 'rootsOnly';
  roots.append(rootsOnly, ' roots only');
  const submit = element('button', 'primary', 'Find');
  submit.type = 'submit';
  form.append(roots, submit);

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const params = new URLSearchParams();
    for (const name of FILTER_FIELDS) {
      const value = form.elements[name].value.trim();
      if (value) params.set(name, value);
    }
    if (rootsOnly.checked) params.set('rootsOnly', 'true');
    onSubmit({ q: form.elements.q.value.trim(), params });
  });
  return form;
}

/** Shows a search route's filters in the form. */
export function fillForm(form, params) {
  for (const name of FILTER_FIELDS) form.elements[name].value = params.get(name) || '';
  form.elements.rootsOnly.checked = params.get('rootsOnly') === 'true';
}

/** Where `q` leads: `#/event/<id>` when it names an event, else `#/correlation/<q>`. */
export async function resolveQuery(q) {
  if (isUuid(q) && (await fetchEventPlace(q.toLowerCase()))) return `#/event/${q.toLowerCase()}`;
  return `#/correlation/${encodeURIComponent(q)}`;
}

/** The `AuditEventFilter` of a search route's parameters. */
function filterOf(params) {
  const filter = {};
  for (const name of FILTER_FIELDS) if (params.get(name)) filter[name] = params.get(name);
  if (params.get('rootsOnly') === 'true') filter.rootsOnly = true;
  return filter;
}

/** A short, readable account of the filters (for the result heading). */
function describe(params) {
  const parts = [];
  for (const name of FILTER_FIELDS) if (params.get(name)) parts.push(`${name}: ${params.get(name)}`);
  if (params.get('rootsOnly') === 'true') parts.push('roots only');
  return parts.length ? parts.join(' · ') : 'all events';
}

function resultItem(event) {
  const item = element('li', `result outcome-${event.eventOutcome}`);
  item.dataset.testid = 'result';
  item.dataset.eventId = event.eventId;
  const main = element('a', 'result-main');
  main.href = `#/event/${event.eventId}`;
  main.append(element('span', 'dot'), element('span', 'type', event.eventType));
  if (event.severity) {
    // Only known severities become a class name: the text is the writer's.
    const known = SEVERITIES.has(event.severity) ? ` severity-${event.severity}` : '';
    main.append(element('span', `severity${known}`, event.severity));
  }
  const correlation = element('a', 'correlation', event.correlationId);
  correlation.href = `#/correlation/${encodeURIComponent(event.correlationId)}`;
  correlation.title = 'Show the tree of this correlation';
  const time = element('span', 'time', formatTime(event.eventTimestamp));
  time.title = event.eventTimestamp;
  const children = event.childCount ? ` · ${event.childCount} ${event.childCount === 1 ? 'child' : 'children'}` : '';
  const meta = element('span', 'muted', `${event.actorId}${children}`);
  item.append(main, correlation, meta, time);
  // The whole row is a target, not only the link.
  item.addEventListener('click', (click) => {
    if (!click.target.closest('a')) location.hash = main.getAttribute('href');
  });
  return item;
}

/**
 * Runs the search of a `#/search?…` route and shows one page of results in `container`.
 * Throws the `ApiError` of a failed request.
 */
export async function showResults(container, params, isCurrent = () => true) {
  const filter = filterOf(params);
  const page = await searchEvents(filter, PAGE_SIZE, params.get('after'));
  const heading = element('div', 'results-head');
  heading.append(
    element('h2', null, `${page.totalCount.toLocaleString()} ${page.totalCount === 1 ? 'event' : 'events'}`),
    element('span', 'muted', `${describe(params)} · newest first`),
  );
  const list = element('ul', 'results');
  list.dataset.testid = 'results';
  for (const event of page.nodes) list.append(resultItem(event));
  if (!page.nodes.length) list.append(element('li', 'muted empty', 'No event matches.'));

  const pager = element('div', 'pager');
  if (params.get('after')) {
    const first = element('a', 'button', 'first page');
    const rest = new URLSearchParams(params);
    rest.delete('after');
    first.href = `#/search?${rest}`;
    pager.append(first);
  }
  if (page.pageInfo.hasNextPage) {
    const next = element('button', 'primary', 'next page');
    next.type = 'button';
    next.dataset.testid = 'next-page';
    next.addEventListener('click', () => {
      const following = new URLSearchParams(params);
      following.set('after', page.pageInfo.endCursor);
      location.hash = `#/search?${following}`;
    });
    pager.append(next);
  }
  if (isCurrent()) container.replaceChildren(heading, list, pager);
}
