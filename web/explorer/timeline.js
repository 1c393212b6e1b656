/**
 * The timeline (Gantt) column of the tree: each row's bar spans `eventTimestamp` to
 * `eventTimestamp + durationMs` on one time scale for the whole loaded tree, like a trace view.
 *
 * - `analyse(model)` computes the scale and the critical path: the chain from a root down to the
 *   event that ends last (the one the whole tree waited for).
 * - `renderBar(cell, node, parent, analysis)` draws one row's bar, with a clock-skew marker when
 *   the event claims to start before its parent did.
 * - `renderAxis(element, analysis)` draws the time ticks above the column.
 *
 * Times are handled in milliseconds since the epoch; the microseconds of `eventTimestamp` only
 * matter for ordering, which the tree does on the strings.
 */

/** Start of an event in ms since the epoch (cached on the node). */
export function startOf(node) {
  if (node.start === undefined) node.start = Date.parse(node.event.eventTimestamp);
  return node.start;
}

/** End of an event: its start plus its duration (0 when unknown). */
export function endOf(node) {
  return startOf(node) + Math.max(0, node.event.durationMs || 0);
}

/**
 * Scale and critical path of every loaded node.
 * @returns {{t0: number, span: number, critical: Set<string>}}
 */
export function analyse(model) {
  let t0 = Infinity;
  let t1 = -Infinity;
  let last = null;
  for (const node of model.nodes.values()) {
    const start = startOf(node);
    const end = endOf(node);
    if (start < t0) t0 = start;
    if (end > t1 || (end === t1 && last && node.depth > last.depth)) {
      t1 = end;
      last = node;
    }
  }
  const critical = new Set();
  for (let node = last; node; node = model.nodes.get(node.parentId)) {
    if (critical.has(node.id)) break; // a cycle cannot happen, but never loop on bad data
    critical.add(node.id);
  }
  if (!Number.isFinite(t0)) {
    t0 = 0;
    t1 = 1;
  }
  // Leave a little room on the right for the last bar's label.
  return { t0, span: Math.max(t1 - t0, 1) * 1.08, critical };
}

/** Human-readable duration: `850 µs`, `12 ms`, `3.4 s`, `2 min 5 s`. */
export function formatDuration(ms) {
  const abs = Math.abs(ms);
  if (abs < 1) return `${Math.round(ms * 1000)} µs`;
  if (abs < 1000) return `${Math.round(ms * 10) / 10} ms`;
  if (abs < 60000) return `${Math.round(ms / 100) / 10} s`;
  const minutes = Math.floor(abs / 60000);
  if (minutes < 120) return `${minutes} min ${Math.round((abs % 60000) / 1000)} s`;
  return `${Math.round(abs / 360000) / 10} h`;
}

/** Fills `cell` (the row's timeline cell) with the bar of `node`. */
export function renderBar(cell, node, parent, analysis) {
  const { t0, span } = analysis;
  const start = startOf(node);
  const duration = Math.max(0, node.event.durationMs || 0);
  const bar = document.createElement('div');
  bar.className = `bar outcome-${node.event.eventOutcome}`;
  if (!node.event.durationMs) bar.classList.add('instant');
  bar.dataset.testid = 'bar';
  bar.style.left = `${((start - t0) / span) * 100}%`;
  bar.style.width = `${(duration / span) * 100}%`;
  bar.title = `${node.event.eventType}: starts at +${formatDuration(start - t0)}, `
    + (node.event.durationMs == null ? 'no duration' : `takes ${formatDuration(duration)}`);
  cell.append(bar);

  if (parent) {
    const skew = startOf(parent) - start;
    if (skew > 0) {
      const marker = document.createElement('span');
      marker.className = 'skew';
      marker.dataset.testid = 'skew';
      marker.textContent = '⚠';
      marker.title = `starts ${formatDuration(skew)} before its parent (clock skew)`;
      marker.style.left = `${((start - t0) / span) * 100}%`;
      cell.append(marker);
    }
  }

  // A label beside short bars, inside long ones; the CSS decides where it fits.
  const label = document.createElement('span');
  label.className = 'bar-label';
  label.textContent = node.event.durationMs == null ? '' : formatDuration(duration);
  label.style.left = `${((start - t0 + duration) / span) * 100}%`;
  cell.append(label);
}

/** Picks a tick step of 1, 2 or 5 × 10ⁿ ms giving about `count` ticks over `span`. */
function tickStep(span, count) {
  const raw = span / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const factor of [1, 2, 5, 10]) {
    if (power * factor >= raw) return power * factor;
  }
  return power * 10;
}

/** Draws the time axis (offsets from the first start) into `element`. */
export function renderAxis(element, analysis) {
  element.replaceChildren();
  const ticks = element.clientWidth > 400 ? 6 : 3;
  const step = tickStep(analysis.span, ticks);
  for (let offset = 0; offset <= analysis.span / 1.08; offset += step) {
    const tick = document.createElement('span');
    tick.className = 'tick';
    tick.style.left = `${(offset / analysis.span) * 100}%`;
    tick.textContent = offset === 0 ? '0' : `+${formatDuration(offset)}`;
    element.append(tick);
  }
}
