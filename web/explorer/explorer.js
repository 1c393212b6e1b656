/**
 * The causality explorer's entry module: builds the page, routes on the location hash and wires
 * the parts together.
 *
 * Routes (Back and Forward work, every view can be linked):
 *  - `#/correlation/<id>`: the causality tree of a correlation, with its timeline, live;
 *  - `#/event/<uuid>`: the tree containing the event (below its root), the path to it revealed,
 *    the event selected and its details open;
 *  - `#/search?<filters>[&after=<cursor>]`, or nothing: a page of matching events.
 *
 * For tests, `window.explorerReady` turns true when a route has rendered (false while one is
 * being loaded) and `window.explorerIdle` is true when no request is in flight.
 */

import {
  ApiError,
  busy,
  fetchAncestors,
  fetchDetail,
  fetchEventPlace,
  fetchLiveCursor,
  fetchTree,
  getToken,
  isUuid,
  onBusy,
  setToken,
} from '/explorer/api.js';
import { renderDetail, renderLoading } from '/explorer/detail.js';
import { LiveTree } from '/explorer/live.js';
import { buildSearchForm, fillForm, resolveQuery, showResults } from '/explorer/search.js';
import { TREE_MAX_DEPTH, TREE_MAX_NODES, TreeModel, TreeView } from '/explorer/tree.js';

const THEME_KEY = 'auditgraph.explorer.theme';
const DETAIL_DELAY_MS = 120;

window.explorerReady = false;
window.explorerIdle = true;

function element(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

function button(text, testid, title) {
  const el = element('button', null, text);
  el.type = 'button';
  if (testid) el.dataset.testid = testid;
  if (title) el.title = title;
  return el;
}

// --- The page --------------------------------------------------------------------------------

const app = document.getElementById('app');

const brand = element('a', 'brand');
brand.href = '#/';
brand.append(element('strong', null, 'auditgraph'), element('span', null, ' explorer'));

const liveIndicator = element('span', 'live-indicator offline', 'offline');
liveIndicator.dataset.testid = 'live';
liveIndicator.setAttribute('role', 'status');
liveIndicator.title = 'not watching a tree';

const refreshButton = button('↻ Refresh', 'refresh', 'Load the view again');

const tokenInput = element('input', 'token');
tokenInput.type = 'password';
tokenInput.dataset.testid = 'token';
tokenInput.placeholder = 'API token';
tokenInput.autocomplete = 'off';
tokenInput.setAttribute('aria-label', 'API token (kept for this tab only)');
tokenInput.title = 'Bearer token sent with every request; kept in this tab only';
tokenInput.value = getToken();

const themeButton = button('', 'theme');

// The token sits in a form of its own: Enter applies it, and password managers leave it alone.
const tokenForm = element('form', 'token-form');
tokenForm.append(tokenInput);
tokenForm.addEventListener('submit', (event) => {
  event.preventDefault();
  applyToken();
});
tokenInput.addEventListener('change', applyToken);

const topbar = element('header', 'topbar');
const tools = element('div', 'tools');
tools.append(liveIndicator, refreshButton, tokenForm, themeButton);
topbar.append(brand, tools);

const searchForm = buildSearchForm(submitSearch);

const errorBox = element('div', 'error');
errorBox.dataset.testid = 'error';
errorBox.setAttribute('role', 'alert');
errorBox.hidden = true;

const resultsView = element('section', 'results-view');
resultsView.setAttribute('aria-label', 'Search results');

const treeView = element('section', 'tree-view');
treeView.setAttribute('aria-label', 'Causality tree');
const treeStatus = element('div', 'tree-status');
const treePane = element('div', 'tree-pane');
treeView.append(treeStatus, treePane);

const detailPane = element('aside', 'detail');
detailPane.dataset.testid = 'detail';
detailPane.setAttribute('aria-label', 'Event details');
detailPane.tabIndex = -1;
detailPane.hidden = true;

const main = element('main', 'layout');
main.append(resultsView, treeView, detailPane);
app.append(topbar, searchForm, errorBox, main);
onBusy((isBusy) => document.body.classList.toggle('busy', isBusy));

// --- State -----------------------------------------------------------------------------------

let model = null;
let currentView = null;
let navigation = 0;
let detailSeq = 0;
let detailTimer = 0;
let liveFrame = 0;
/** Live changes received while the tree they belong to is still loading (null: none loading). */
let queued = null;

const tree = new TreeView(treePane, {
  onSelect: (node) => {
    if (!detailPane.hidden) scheduleDetail(node.id);
  },
  onOpen: (node) => openDetail(node.id),
  onError: showError,
  onChange: updateStatus,
});

const live = new LiveTree({
  onChange: (change) => {
    if (queued) queued.push(change);
    else if (model) applyChange(change);
  },
  onStatus: (status, why) => {
    liveIndicator.textContent = status;
    liveIndicator.className = `live-indicator ${status}`;
    liveIndicator.title = why;
  },
  onError: (message, code) => showError(new ApiError(message, code)),
});

/**
 * Subscribes to a tree from where the commit order stood before the tree is read, so that
 * nothing written meanwhile is missed; what the tree already holds is merged, not repeated.
 */
async function watch(scope) {
  queued = [];
  const cursor = await fetchLiveCursor();
  live.start(scope, cursor);
}

function applyChange(change) {
  const node = model.applyLive(change);
  if (node) tree.markFresh(node.id);
  // Coalesce bursts (a batch of 500) into one re-render per frame.
  if (!liveFrame) {
    liveFrame = requestAnimationFrame(() => {
      liveFrame = 0;
      tree.refresh({ keepAnchor: true });
      updateStatus();
    });
  }
}

// --- Errors ----------------------------------------------------------------------------------

function showError(error) {
  const code = error.code || 'ERROR';
  let text = `${code}: ${error.message}`;
  if (code === 'UNAUTHENTICATED') text += ' — enter an API token in the field at the top.';
  if (code === 'FORBIDDEN') text += ' — this token lacks the role needed.';
  errorBox.textContent = text;
  errorBox.hidden = false;
  tokenInput.classList.toggle('attention', code === 'UNAUTHENTICATED');
}

function clearError() {
  errorBox.hidden = true;
  errorBox.textContent = '';
  tokenInput.classList.remove('attention');
}

// --- Views -----------------------------------------------------------------------------------

function setView(view) {
  currentView = view;
  resultsView.hidden = view !== 'search';
  treeView.hidden = view !== 'tree';
  if (view !== 'tree') {
    queued = null;
    live.stop();
    closeDetail();
  }
}

function updateStatus() {
  if (!model) return;
  const scope = model.scope.correlationId !== undefined
    ? `correlation ${model.scope.correlationId}`
    : `tree below ${model.scope.rootEventId}`;
  const parts = [scope];
  if (!model.size) {
    parts.push('no events yet');
  } else {
    parts.push(`${model.size.toLocaleString()} ${model.size === 1 ? 'event' : 'events'} loaded`);
  }
  const unloaded = model.unloaded();
  if (unloaded) parts.push(`${unloaded.toLocaleString()} more below (expand or load more)`);
  if (model.missing.size) parts.push(`${model.missing.size} with a missing parent`);
  treeStatus.textContent = parts.join(' · ');
  tree.headLabel.textContent = `Event (${model.roots.length} ${model.roots.length === 1 ? 'root' : 'roots'})`;
}

/** Shows a freshly loaded tree and starts watching it. */
function showTree(newModel, keep) {
  model = newModel;
  setView('tree');
  tree.setModel(model);
  if (keep) {
    // After a refresh: the same rows open, the same selection, the same place.
    for (const id of keep.collapsed) if (model.nodes.has(id)) model.collapsed.add(id);
    tree.refresh();
    if (keep.selected && model.nodes.has(keep.selected)) tree.select(keep.selected, { scroll: false });
    tree.scroller.scrollTop = keep.scrollTop;
    tree.render();
  }
  updateStatus();
  // What arrived while loading: known events are merged, new ones placed.
  const arrived = queued || [];
  queued = null;
  for (const change of arrived) applyChange(change);
}

async function showCorrelation(id, seq, keep) {
  searchForm.elements.q.value = id;
  if (!keep && currentView === 'tree' && model && model.scope.correlationId === id) return;
  await watch({ correlationId: id });
  if (seq !== navigation) return;
  const result = await fetchTree({ correlationId: id }, TREE_MAX_DEPTH, TREE_MAX_NODES);
  if (seq !== navigation) return;
  const next = new TreeModel({ correlationId: id });
  next.addTree(result);
  showTree(next, keep);
  if (keep && !detailPane.hidden && tree.selected) await loadDetail(tree.selectedId);
  else closeDetail();
}

async function showEvent(id, seq, keep) {
  searchForm.elements.q.value = id;
  if (!isUuid(id)) throw new ApiError(`"${id}" is not an event id (a UUID)`, 'BAD_USER_INPUT');
  if (!keep && currentView === 'tree' && model && model.nodes.has(id)) {
    tree.reveal(id);
    await openDetail(id);
    return;
  }
  const place = await fetchEventPlace(id);
  if (seq !== navigation) return;
  if (!place) throw new ApiError(`no event has the id ${id}`, 'NOT_FOUND');
  const root = place.root;
  await watch({ rootEventId: root.eventId });
  if (seq !== navigation) return;
  const result = await fetchTree({ rootEventId: root.eventId }, TREE_MAX_DEPTH, TREE_MAX_NODES);
  if (seq !== navigation) return;
  const next = new TreeModel({ rootEventId: root.eventId });
  next.topParentMissing = Boolean(root.parentEventId);
  next.addTree(result);
  if (!next.nodes.has(id)) {
    // Deeper than loaded, or cut by the node bound: graft the path down to it.
    const path = await fetchAncestors(id);
    if (seq !== navigation) return;
    next.addPath(path, place);
  }
  showTree(next, keep);
  tree.reveal(id);
  await openDetail(id);
}

async function showSearch(params, seq) {
  fillForm(searchForm, params);
  searchForm.elements.q.value = '';
  // A slower, older search must not replace a newer one's results.
  await showResults(resultsView, params, () => seq === navigation);
  if (seq !== navigation) return;
  setView('search');
}

// --- Details ---------------------------------------------------------------------------------

async function openDetail(id) {
  detailPane.hidden = false;
  main.classList.add('with-detail');
  cancelScheduledDetail();
  await loadDetail(id);
}

function closeDetail() {
  detailSeq += 1;
  cancelScheduledDetail();
  detailPane.hidden = true;
  main.classList.remove('with-detail');
}

/** Follows the selection with a short delay, so that holding an arrow key stays smooth. */
function scheduleDetail(id) {
  cancelScheduledDetail();
  busy(+1); // a load is as good as started: the page is not idle
  detailTimer = setTimeout(() => {
    detailTimer = 0;
    loadDetail(id);
    busy(-1);
  }, DETAIL_DELAY_MS);
}

function cancelScheduledDetail() {
  if (!detailTimer) return;
  clearTimeout(detailTimer);
  detailTimer = 0;
  busy(-1);
}

async function loadDetail(id) {
  const seq = ++detailSeq;
  renderLoading(detailPane, id);
  try {
    const event = await fetchDetail(id);
    if (seq !== detailSeq) return;
    if (!event) throw new ApiError(`no event has the id ${id}`, 'NOT_FOUND');
    renderDetail(detailPane, event, {
      onClose: () => {
        closeDetail();
        tree.scroller.focus();
      },
    });
  } catch (error) {
    if (seq === detailSeq) {
      detailPane.replaceChildren(element('p', 'muted', 'Details could not be loaded.'));
      showError(error);
    }
  }
}

// --- Routing ---------------------------------------------------------------------------------

function parseHash() {
  const hash = location.hash.replace(/^#\/?/, '');
  const [path, query = ''] = hash.split('?');
  const [view, ...rest] = path.split('/');
  const id = decodeURIComponent(rest.join('/'));
  if (view === 'correlation' && id) return { view, id };
  if (view === 'event' && id) return { view, id: id.toLowerCase() };
  return { view: 'search', params: new URLSearchParams(query) };
}

/** Renders the route in the hash; `keep` (from a refresh) reloads and keeps the tree's state. */
async function route(keep = null) {
  const seq = ++navigation;
  busy(+1);
  window.explorerReady = false;
  if (queued) {
    // A tree was still loading: this navigation replaces it. Watch what is shown, if anything.
    queued = null;
    if (currentView === 'tree' && model) live.start(model.scope);
    else live.stop();
  }
  try {
    const target = parseHash();
    clearError();
    if (target.view === 'correlation') await showCorrelation(target.id, seq, keep);
    else if (target.view === 'event') await showEvent(target.id, seq, keep);
    else await showSearch(target.params, seq);
  } catch (error) {
    if (seq === navigation) {
      showError(error);
      if (queued) {
        // The tree being watched did not load: stop watching it.
        queued = null;
        live.stop();
      }
    }
  } finally {
    if (seq === navigation) window.explorerReady = true;
    busy(-1);
  }
}

function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

async function submitSearch({ q, params }) {
  if (!q) {
    navigate(`#/search?${params}`);
    return;
  }
  busy(+1);
  const started = navigation;
  try {
    const target = await resolveQuery(q);
    // The user may have gone elsewhere while the id was looked up.
    if (started === navigation) navigate(target);
  } catch (error) {
    showError(error);
  } finally {
    busy(-1);
  }
}

window.addEventListener('hashchange', () => route());

/** The state a reload of the tree keeps: open rows, selection, scroll position. */
function treeState() {
  return currentView === 'tree' && model
    ? { collapsed: [...model.collapsed], selected: tree.selectedId, scrollTop: tree.scroller.scrollTop }
    : null;
}

refreshButton.addEventListener('click', () => route(treeState()));

/** A new token: remember it for this tab and load the view again with it. */
function applyToken() {
  const token = tokenInput.value.trim();
  if (token === getToken()) return;
  setToken(token);
  route(treeState());
}

// --- Keyboard --------------------------------------------------------------------------------

function typing(target) {
  return target instanceof HTMLElement && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
}

document.addEventListener('keydown', (event) => {
  if (event.key === '/' && !typing(event.target) && !event.ctrlKey && !event.metaKey && !event.altKey) {
    event.preventDefault();
    searchForm.elements.q.focus();
    searchForm.elements.q.select();
  } else if (event.key === 'Escape') {
    if (!detailPane.hidden) {
      closeDetail();
      if (currentView === 'tree') tree.scroller.focus();
    } else if (typing(event.target)) {
      event.target.blur();
    }
  }
});

// --- Theme ---------------------------------------------------------------------------------
// The stylesheet keys its colours on `data-theme`; without a stored choice it follows the system.

const darkQuery = matchMedia('(prefers-color-scheme: dark)');

let chosenTheme = null;
try {
  chosenTheme = ['dark', 'light'].includes(localStorage.getItem(THEME_KEY)) ? localStorage.getItem(THEME_KEY) : null;
} catch {
  // No storage: follow the system.
}

function showTheme() {
  const theme = chosenTheme || (darkQuery.matches ? 'dark' : 'light');
  document.documentElement.dataset.theme = theme;
  themeButton.textContent = theme === 'dark' ? '☀' : '☾';
  themeButton.title = `Switch to the ${theme === 'dark' ? 'light' : 'dark'} theme`;
  themeButton.setAttribute('aria-label', themeButton.title);
}

showTheme();
darkQuery.addEventListener('change', showTheme);
themeButton.addEventListener('click', () => {
  chosenTheme = document.documentElement.dataset.theme === 'dark' ? 'light' : 'dark';
  try {
    localStorage.setItem(THEME_KEY, chosenTheme);
  } catch {
    // No storage: the choice lasts for this page only.
  }
  showTheme();
});

route();
