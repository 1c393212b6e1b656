/**
 * The causality tree with its timeline, as one virtualized list.
 *
 * `TreeModel` holds what has been loaded of one tree (a correlation's, or the one below an
 * event): nodes by id, each with its ordered loaded children, the server's `childCount`, and the
 * cursor to page on. What is not loaded yet is loaded on demand:
 *  - a node whose children were cut by `maxDepth`/`maxNodes` (none loaded) loads
 *    `causalityTree(rootEventId: node)` when expanded, grafted at the node's depth;
 *  - a node with some of its children loaded shows a "load more" row that pages on with
 *    `children(first, after)`. Loaded children are a prefix of the server's order (breadth-first
 *    by time then id is the same order as `children`), except after grafting a path or a live
 *    event; without a cursor the first page therefore starts at the beginning and known events
 *    are skipped.
 *
 * `TreeView` flattens the expanded part into rows and renders only those in the viewport
 * (+ overscan), absolutely positioned at a fixed row height inside a tall spacer, so that a
 * 5,000-child fan-out or a 1,000-deep chain costs the same as a small tree. Each row holds the
 * tree cell on the left and the timeline cell on the right, so both stay aligned.
 */

import { fetchTree, fetchChildren, MAX_PAGE } from '/explorer/api.js';
import { analyse, renderAxis, renderBar, startOf } from '/explorer/timeline.js';

export const TREE_MAX_DEPTH = 100;
export const TREE_MAX_NODES = 1000;
/** Children loaded by one "load more". */
export const CHILD_PAGE = 200;

const ROW_HEIGHT = 28; // keep in step with --row-height in explorer.css
const OVERSCAN = 10;
const INDENT_PX = 12;
const INDENT_CAP = 8; // deeper rows stop moving right and show their depth instead
const FRESH_MS = 3000;

/** Server order of siblings: `eventTimestamp`, then `eventId`. */
function compareNodes(a, b) {
  const byTime = startOf(a) - startOf(b);
  if (byTime) return byTime;
  const ta = a.event.eventTimestamp;
  const tb = b.event.eventTimestamp;
  if (ta !== tb) return ta < tb ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

export class TreeModel {
  /** @param {{correlationId?: string, rootEventId?: string}} scope */
  constructor(scope) {
    this.scope = scope;
    this.nodes = new Map();
    this.roots = [];
    this.collapsed = new Set();
    this.loading = new Set();
    this.missing = new Set();
    /** Live changes below a node whose children were loading, applied once they are in. */
    this.held = [];
    /** The top event's parent is known to be missing (an event route found it as `root`). */
    this.topParentMissing = false;
    this.version = 0;
  }

  get size() {
    return this.nodes.size;
  }

  /** Inserts `id` into `list` (of node ids) at its place in server order. */
  insertSorted(list, id) {
    const node = this.nodes.get(id);
    const last = list.length && this.nodes.get(list[list.length - 1]);
    if (!last || compareNodes(last, node) <= 0) {
      list.push(id);
      return;
    }
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (compareNodes(this.nodes.get(list[mid]), node) <= 0) lo = mid + 1;
      else hi = mid;
    }
    list.splice(lo, 0, id);
  }

  /** Adds an event below `parentId` (null: as a root); returns its node, or the known one. */
  add(event, depth, parentId) {
    const known = this.nodes.get(event.eventId);
    if (known) {
      // Counts only grow; a message read earlier must not lower one read later.
      const childCount = Math.max(known.event.childCount ?? 0, event.childCount ?? 0);
      known.event = { ...known.event, ...event, childCount };
      return known;
    }
    const node = { id: event.eventId, event, depth, parentId, children: [], cursor: null, start: undefined };
    this.nodes.set(node.id, node);
    this.insertSorted(parentId ? this.nodes.get(parentId).children : this.roots, node.id);
    this.version += 1;
    return node;
  }

  /** Merges a `causalityTree` result whose depth 0 sits at depth `base`. */
  addTree(tree, base = 0) {
    for (const { depth, parentEventId, event } of tree.nodes) {
      const parent = parentEventId && this.nodes.has(parentEventId) ? parentEventId : null;
      this.add(event, base + depth, parent);
    }
    for (const id of tree.missingParentEventIds || []) this.missing.add(id);
    this.version += 1;
  }

  /** Adds children pages (`events` in server order); returns how many were new. */
  addChildren(parent, events) {
    let added = 0;
    for (const event of events) {
      if (!this.nodes.has(event.eventId)) added += 1;
      this.add(event, parent.depth + 1, parent.id);
    }
    return added;
  }

  /** Grafts `path` (root first) and then `event` below the deepest already loaded node. */
  addPath(path, event) {
    let parent = null;
    for (const step of [...path, event]) {
      const known = this.nodes.get(step.eventId);
      parent = known || this.add(step, parent ? parent.depth + 1 : 0, parent ? parent.id : null);
    }
    this.version += 1;
  }

  /**
   * Places one `causalityTreeChanged` message. Returns the new node, or null when the event
   * hangs below a part of the tree that is not loaded (then at most a count changes).
   */
  applyLive(change) {
    const event = change.event;
    if (this.nodes.has(event.eventId)) {
      this.add(event, 0, null);
      this.version += 1;
      return null;
    }
    const parentId = change.parentEventId || event.parentEventId;
    const parent = parentId && this.nodes.get(parentId);
    if (parent && this.loading.has(parent.id)) {
      // The page being loaded may or may not hold it: decide once it is in.
      this.held.push(change);
      return null;
    }
    if (!parent) {
      if (change.depth !== 0) return null;
      return this.add(event, 0, null);
    }
    // Insert in place only while the parent's children are all loaded: otherwise the event
    // would break the prefix that paging relies on; it is counted and comes with the next page.
    const complete = parent.children.length >= parent.event.childCount;
    parent.event = { ...parent.event, childCount: parent.event.childCount + 1 };
    this.version += 1;
    return complete ? this.add(event, parent.depth + 1, parent.id) : null;
  }

  /** Applies the changes held while their parent's children were loading; returns the new nodes. */
  releaseHeld() {
    const held = this.held.filter((change) => !this.loading.has(change.parentEventId || change.event.parentEventId));
    this.held = this.held.filter((change) => !held.includes(change));
    return held.map((change) => this.applyLive(change)).filter(Boolean);
  }

  /** Whether the event names a parent that is neither in the store nor in this tree. */
  hasMissingParent(node) {
    if (this.missing.has(node.id)) return true;
    const parentId = node.event.parentEventId;
    if (!parentId || this.nodes.has(parentId)) return false;
    if (node.id === this.scope.rootEventId) return this.topParentMissing;
    return true;
  }

  /** How many events are known to exist below loaded nodes but are not loaded yet. */
  unloaded() {
    let count = 0;
    for (const node of this.nodes.values()) count += Math.max(0, node.event.childCount - node.children.length);
    return count;
  }

  isExpandable(node) {
    return node.event.childCount > 0 || node.children.length > 0;
  }

  isExpanded(node) {
    return (node.children.length > 0 && !this.collapsed.has(node.id)) || this.loading.has(node.id);
  }

  /** The expanded part of the tree, depth first: `{node}` rows and `{more}` rows. */
  flatten() {
    const rows = [];
    const stack = [];
    for (let i = this.roots.length - 1; i >= 0; i -= 1) stack.push({ node: this.nodes.get(this.roots[i]) });
    while (stack.length) {
      const row = stack.pop();
      rows.push(row);
      const node = row.node;
      if (!node || !this.isExpanded(node)) continue;
      const remaining = Math.max(0, node.event.childCount - node.children.length);
      if (remaining > 0 || this.loading.has(node.id)) stack.push({ more: node, remaining });
      for (let i = node.children.length - 1; i >= 0; i -= 1) stack.push({ node: this.nodes.get(node.children[i]) });
    }
    return rows;
  }

  /** Ids from a root down to `id`. */
  pathTo(id) {
    const path = [];
    for (let node = this.nodes.get(id); node; node = this.nodes.get(node.parentId)) path.unshift(node.id);
    return path;
  }
}

/** `HH:MM:SS.mmm` in UTC. */
function clock(node) {
  const ms = startOf(node);
  return Number.isFinite(ms) ? new Date(ms).toISOString().slice(11, 23) : node.event.eventTimestamp;
}

function element(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

export class TreeView {
  /**
   * @param {HTMLElement} pane where to build the header and the scroll container
   * @param {object} handlers `onSelect(node)`, `onOpen(node)`, `onError(error)`, `onChange()`
   */
  constructor(pane, handlers) {
    this.handlers = handlers;
    this.model = null;
    this.rows = [];
    this.indexOf = new Map();
    this.selectedId = null;
    this.analysis = null;
    this.analysedVersion = -1;
    this.rendered = new Map();
    this.dirty = true;
    this.frame = 0;
    this.fresh = new Set();

    const head = element('div', 'tree-head');
    this.headLabel = element('div', 'head-tree', 'Event');
    this.axis = element('div', 'head-time axis');
    head.append(this.headLabel, this.axis);
    this.head = head;

    this.scroller = element('div', 'tree-scroll');
    this.scroller.dataset.testid = 'tree';
    this.scroller.setAttribute('role', 'tree');
    this.scroller.setAttribute('aria-label', 'Causality tree and timeline');
    this.scroller.tabIndex = 0;
    this.spacer = element('div', 'tree-spacer');
    this.scroller.append(this.spacer);
    pane.append(head, this.scroller);

    this.scroller.addEventListener('scroll', () => this.schedule(), { passive: true });
    this.scroller.addEventListener('click', (event) => this.click(event));
    this.scroller.addEventListener('keydown', (event) => this.key(event));
    new ResizeObserver(() => {
      this.dirty = true;
      this.axisWidth = -1;
      this.schedule();
    }).observe(this.scroller);
  }

  /** Shows another tree (or none). */
  setModel(model) {
    this.model = model;
    this.selectedId = null;
    this.scroller.scrollTop = 0;
    this.refresh();
  }

  get selected() {
    return this.model && this.model.nodes.get(this.selectedId);
  }

  /** Re-flattens after the model changed; `keepAnchor` keeps the first visible row in place. */
  refresh({ keepAnchor = false } = {}) {
    const anchorIndex = Math.floor(this.scroller.scrollTop / ROW_HEIGHT);
    const anchor = keepAnchor && this.scroller.scrollTop > 0 ? this.keyOf(this.rows[anchorIndex]) : null;
    this.rows = this.model ? this.model.flatten() : [];
    this.indexOf = new Map(this.rows.map((row, index) => [this.keyOf(row), index]));
    if (this.model && this.model.version !== this.analysedVersion) {
      this.analysis = analyse(this.model);
      this.analysedVersion = this.model.version;
      this.axisWidth = -1;
    }
    this.spacer.style.height = `${this.rows.length * ROW_HEIGHT}px`;
    if (anchor && this.indexOf.has(anchor)) {
      this.scroller.scrollTop += (this.indexOf.get(anchor) - anchorIndex) * ROW_HEIGHT;
    }
    this.dirty = true;
    this.render();
  }

  keyOf(row) {
    if (!row) return null;
    return row.node ? row.node.id : `more:${row.more.id}`;
  }

  schedule() {
    if (!this.frame) this.frame = requestAnimationFrame(() => this.render());
  }

  /** Renders the rows in the viewport, reusing those already there unless something changed. */
  render() {
    cancelAnimationFrame(this.frame);
    this.frame = 0;
    const top = this.scroller.scrollTop;
    const height = this.scroller.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(this.rows.length, Math.ceil((top + height) / ROW_HEIGHT) + OVERSCAN);
    const keep = new Map();
    for (let index = first; index < last; index += 1) {
      const row = this.rows[index];
      const key = this.keyOf(row);
      let el = !this.dirty && this.rendered.get(key);
      if (!el || el.rowIndex !== index) el = row.node ? this.nodeRow(row.node, index) : this.moreRow(row, index);
      keep.set(key, el);
    }
    for (const [key, el] of this.rendered) if (keep.get(key) !== el) el.remove();
    // Keep the document order the visual order (for screen readers and `querySelector`).
    let next = this.spacer.firstChild;
    for (const el of keep.values()) {
      if (el === next) next = next.nextSibling;
      else this.spacer.insertBefore(el, next);
    }
    this.rendered = keep;
    this.dirty = false;

    const active = this.selectedId && keep.get(this.selectedId);
    if (active) this.scroller.setAttribute('aria-activedescendant', active.id);
    else this.scroller.removeAttribute('aria-activedescendant');
    // The header spans the scrollbar too: pad it so the axis lines up with the bars.
    this.head.style.paddingRight = `${this.scroller.offsetWidth - this.scroller.clientWidth}px`;
    if (this.analysis && this.axisWidth !== this.axis.clientWidth) {
      this.axisWidth = this.axis.clientWidth;
      renderAxis(this.axis, this.analysis);
    }
  }

  nodeRow(node, index) {
    const model = this.model;
    const event = node.event;
    const row = element('div', `row outcome-${event.eventOutcome}`);
    row.rowIndex = index;
    row.id = `row-${node.id}`;
    row.dataset.testid = 'row';
    row.dataset.eventId = node.id;
    row.dataset.depth = String(node.depth);
    row.setAttribute('role', 'treeitem');
    row.setAttribute('aria-level', String(node.depth + 1));
    // Only the rows in view are in the page: say where each stands among its siblings.
    const parent = node.parentId ? model.nodes.get(node.parentId) : null;
    const siblings = parent ? parent.children : model.roots;
    const size = parent ? Math.max(parent.event.childCount, siblings.length) : siblings.length;
    row.setAttribute('aria-posinset', String(siblings.indexOf(node.id) + 1));
    row.setAttribute('aria-setsize', String(size));
    row.setAttribute('aria-selected', node.id === this.selectedId ? 'true' : 'false');
    if (model.isExpandable(node)) row.setAttribute('aria-expanded', model.isExpanded(node) ? 'true' : 'false');
    if (node.id === this.selectedId) row.classList.add('selected');
    if (this.analysis && this.analysis.critical.has(node.id)) row.classList.add('critical');
    if (this.fresh.has(node.id)) row.classList.add('fresh');
    row.style.top = `${index * ROW_HEIGHT}px`;

    const cell = element('div', 'cell-tree');
    cell.style.paddingLeft = `${Math.min(node.depth, INDENT_CAP) * INDENT_PX + 4}px`;
    if (node.depth > INDENT_CAP) {
      const depth = element('span', 'depth', String(node.depth));
      depth.title = `depth ${node.depth}`;
      cell.append(depth);
    }
    if (model.isExpandable(node)) {
      const toggle = element('span', 'toggle', model.isExpanded(node) ? '▾' : '▸');
      toggle.dataset.testid = 'toggle';
      toggle.setAttribute('aria-hidden', 'true');
      cell.append(toggle);
    } else {
      cell.append(element('span', 'toggle leaf'));
    }
    const dot = element('span', 'dot');
    dot.title = event.eventOutcome;
    cell.append(dot, element('span', 'type', event.eventType));
    if (model.hasMissingParent(node)) {
      const missing = element('span', 'missing', 'parent missing');
      missing.dataset.testid = 'missing-parent';
      missing.title = model.missing.has(node.id) || node.id === model.scope.rootEventId
        ? `its parent ${event.parentEventId} is not in the store`
        : `its parent ${event.parentEventId} is not part of this tree`;
      cell.append(missing);
    }
    const actor = element('span', 'actor', event.actorId);
    actor.title = `${event.actorType} ${event.actorId}`;
    const time = element('span', 'time', clock(node));
    time.title = event.eventTimestamp;
    const count = element('span', event.childCount ? 'count' : 'count zero', String(event.childCount));
    count.dataset.testid = 'child-count';
    count.title = `${event.childCount} direct ${event.childCount === 1 ? 'child' : 'children'}`;
    cell.append(actor, time, count);

    const timeline = element('div', 'cell-time');
    if (this.analysis) renderBar(timeline, node, model.nodes.get(node.parentId), this.analysis);
    row.append(cell, timeline);
    return row;
  }

  moreRow({ more: parent, remaining }, index) {
    const row = element('div', 'row more');
    row.rowIndex = index;
    row.dataset.testid = 'more';
    row.dataset.parentId = parent.id;
    row.setAttribute('role', 'none');
    row.style.top = `${index * ROW_HEIGHT}px`;
    const cell = element('div', 'cell-tree');
    cell.style.paddingLeft = `${Math.min(parent.depth + 1, INDENT_CAP) * INDENT_PX + 22}px`;
    const loading = this.model.loading.has(parent.id);
    const button = element('button', 'more-button',
      loading ? 'loading…' : `load ${Math.min(CHILD_PAGE, remaining)} more (${remaining.toLocaleString()} not loaded)`);
    button.type = 'button';
    button.disabled = loading;
    button.tabIndex = -1;
    cell.append(button);
    row.append(cell, element('div', 'cell-time'));
    return row;
  }

  click(event) {
    const more = event.target.closest('[data-testid=more]');
    if (more) {
      const parent = this.model.nodes.get(more.dataset.parentId);
      // The row is rebuilt: keep the focus on the tree, where the arrow keys work.
      this.scroller.focus({ preventScroll: true });
      if (parent) this.loadMore(parent);
      return;
    }
    const row = event.target.closest('[data-testid=row]');
    if (!row) return;
    const node = this.model.nodes.get(row.dataset.eventId);
    if (event.target.closest('[data-testid=toggle]')) {
      this.toggle(node);
      this.select(node.id);
    } else {
      this.select(node.id);
      this.handlers.onOpen(node);
    }
    this.scroller.focus({ preventScroll: true });
  }

  /** Selects a row (by event id) and scrolls it into view. */
  select(id, { scroll = true } = {}) {
    if (!this.model || !this.model.nodes.has(id)) return;
    if (this.selectedId !== id) {
      // Only two rows change: update them in place rather than rebuilding the viewport.
      this.markSelected(this.rendered.get(this.selectedId), false);
      this.selectedId = id;
      this.markSelected(this.rendered.get(id), true);
      this.handlers.onSelect(this.model.nodes.get(id));
    }
    if (scroll) this.scrollTo(id);
    this.render();
  }

  markSelected(row, selected) {
    if (!row || !row.dataset.eventId) return;
    row.setAttribute('aria-selected', selected ? 'true' : 'false');
    row.classList.toggle('selected', selected);
  }

  scrollTo(id) {
    const index = this.indexOf.get(id);
    if (index === undefined) return;
    const top = index * ROW_HEIGHT;
    const view = this.scroller.clientHeight;
    if (top < this.scroller.scrollTop) this.scroller.scrollTop = top;
    else if (top + ROW_HEIGHT > this.scroller.scrollTop + view) this.scroller.scrollTop = top + ROW_HEIGHT - view;
  }

  /** Expands every ancestor of `id` so that its row exists, then selects it. */
  reveal(id) {
    for (const ancestor of this.model.pathTo(id).slice(0, -1)) this.model.collapsed.delete(ancestor);
    this.refresh();
    this.select(id);
    const index = this.indexOf.get(id);
    // Put a revealed row in the middle rather than at the edge.
    if (index !== undefined) this.scroller.scrollTop = Math.max(0, index * ROW_HEIGHT - this.scroller.clientHeight / 2);
    this.render();
  }

  toggle(node) {
    if (this.model.isExpanded(node)) this.collapse(node);
    else this.expand(node);
  }

  collapse(node) {
    this.model.collapsed.add(node.id);
    this.refresh();
  }

  /** Expands a node, loading the subtree below it when none of its children is loaded yet. */
  async expand(node) {
    const model = this.model;
    model.collapsed.delete(node.id);
    if (node.children.length > 0 || !node.event.childCount) {
      this.refresh();
      return;
    }
    if (model.loading.has(node.id)) return;
    model.loading.add(node.id);
    this.refresh();
    try {
      const tree = await fetchTree({ rootEventId: node.id }, TREE_MAX_DEPTH, TREE_MAX_NODES);
      model.addTree(tree, node.depth);
    } catch (error) {
      this.handlers.onError(error);
    } finally {
      model.loading.delete(node.id);
      model.releaseHeld();
      if (this.model === model) {
        this.refresh({ keepAnchor: true });
        this.handlers.onChange();
      }
    }
  }

  /** Loads the next page of a node's children ("load more"). */
  async loadMore(parent) {
    const model = this.model;
    if (model.loading.has(parent.id)) return;
    model.loading.add(parent.id);
    this.refresh({ keepAnchor: true });
    try {
      let after = parent.cursor;
      let added = 0;
      let more = true;
      while (added < CHILD_PAGE && more) {
        // Without a cursor, start from the beginning and read past what is already loaded.
        const first = Math.min(MAX_PAGE, after ? CHILD_PAGE - added : parent.children.length + CHILD_PAGE);
        const page = await fetchChildren(parent.id, first, after);
        if (!page) break;
        parent.event = { ...parent.event, childCount: Math.max(parent.event.childCount, page.childCount) };
        added += model.addChildren(parent, page.edges.map((edge) => edge.node));
        after = page.pageInfo.endCursor || after;
        more = page.pageInfo.hasNextPage && page.edges.length > 0;
      }
      parent.cursor = after;
      model.version += 1;
    } catch (error) {
      this.handlers.onError(error);
    } finally {
      model.loading.delete(parent.id);
      model.releaseHeld();
      if (this.model === model) {
        this.refresh({ keepAnchor: true });
        this.handlers.onChange();
      }
    }
  }

  /** Marks a row as just arrived for a few seconds. */
  markFresh(id) {
    this.fresh.add(id);
    setTimeout(() => {
      this.fresh.delete(id);
      this.dirty = true;
      this.schedule();
    }, FRESH_MS);
  }

  /** Keyboard navigation (the tree has the focus). */
  key(event) {
    if (!this.model || event.altKey || event.ctrlKey || event.metaKey) return;
    const node = this.selected;
    const index = node ? this.indexOf.get(node.id) : -1;
    const page = Math.max(1, Math.floor(this.scroller.clientHeight / ROW_HEIGHT) - 1);
    switch (event.key) {
      case 'ArrowDown': this.move(index, +1); break;
      case 'ArrowUp': this.move(index < 0 ? this.rows.length : index, -1); break;
      case 'PageDown': this.move(index, +page); break;
      case 'PageUp': this.move(index, -page); break;
      case 'Home': this.move(-1, +1); break;
      case 'End': this.move(this.rows.length, -1); break;
      case 'ArrowRight':
        if (!node) this.move(-1, +1);
        else if (this.model.isExpandable(node) && !this.model.isExpanded(node)) this.expand(node);
        else if (node.children.length && this.model.isExpanded(node)) this.select(node.children[0]);
        break;
      case 'ArrowLeft':
        if (!node) break;
        if (this.model.isExpanded(node) && this.model.isExpandable(node)) this.collapse(node);
        else if (node.parentId) this.select(node.parentId);
        break;
      case 'Enter':
        if (node) this.handlers.onOpen(node);
        break;
      default:
        return;
    }
    event.preventDefault();
  }

  /** Moves the selection `step` rows from `index`, skipping "load more" rows. */
  move(index, step) {
    const direction = Math.sign(step);
    let target = Math.max(-1, Math.min(this.rows.length, index + step));
    while (target >= 0 && target < this.rows.length && !this.rows[target].node) target += direction;
    if (target < 0 || target >= this.rows.length) {
      // Past an end (or on "more" rows there): stay on the nearest event row.
      target = Math.max(0, Math.min(this.rows.length - 1, index + step));
      while (target >= 0 && target < this.rows.length && !this.rows[target].node) target -= direction;
    }
    const row = this.rows[target];
    if (row && row.node) this.select(row.node.id);
  }
}
