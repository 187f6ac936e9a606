// The flows table (follows live, pauses on scroll) and the flow detail.

import { followFlows, type FlowRecord, type FlowEndpoint } from './api';
import { edgeVerdictOf, endpointName, formatBytes, parseTrace, ruleLabel } from './model';

const MAX_ROWS = 500;
/** Rows drawn while following at the top: what a table up to ~1,200 px tall shows (rows are ~20 px); scrolling
 * away fills up to MAX_ROWS. Every new batch lays out the drawn rows again: at 1,000 flows/s, 100 rows made frames
 * of 0.3–0.4 s on the loaded benchmark machine, 50–60 rows about half that. */
export const LIVE_ROWS = 60;
const MAX_BUFFER = 20_000;

function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

export function verdictText(r: FlowRecord): string {
  const v = edgeVerdictOf(r);
  return v === 'would-deny' ? 'ALLOWED (would deny)' : r.verdict.toUpperCase();
}

function time(r: FlowRecord): string {
  const t = r.end_time;
  const i = t.indexOf('T');
  return i >= 0 ? t.slice(i + 1, i + 13) : t;
}

function port(r: FlowRecord): string {
  if (r.icmp) return `${r.protocol} ${r.icmp.type}/${r.icmp.code}`;
  return `${r.protocol}/${r.dst.port ?? '-'}`;
}

/** The row of a record (a button inside the first cell opens the detail). */
export function flowRow(r: FlowRecord, open: (r: FlowRecord) => void): HTMLTableRowElement {
  const tr = el('tr', { class: `flow verdict-${edgeVerdictOf(r)}` });
  const decided = [...r.enforced_trace].reverse().find((h) => h.endsWith('|allow') || h.endsWith('|deny')) ?? '';
  const src = endpointName(r.src);
  const dst = endpointName(r.dst);
  const cells = [time(r), src, dst, port(r), r.direction, verdictText(r), decided];
  cells.forEach((c, i) => {
    const td = el('td');
    if (i === 0) {
      const b = el('button', { type: 'button', class: 'linklike', 'aria-label': `Flow ${src} → ${dst} ${port(r)} ${verdictText(r)} at ${time(r)}` }, c);
      b.addEventListener('click', () => open(r));
      td.append(b);
    } else td.textContent = c;
    tr.append(td);
  });
  return tr;
}

export const FLOW_HEADERS = ['Time', 'Source', 'Destination', 'Port', 'Direction', 'Verdict', 'Decided by'];

export function flowTable(caption: string): { table: HTMLTableElement; body: HTMLTableSectionElement } {
  const table = el('table', { class: 'flows' });
  table.append(el('caption', {}, caption));
  const thead = el('thead');
  const tr = el('tr');
  for (const h of FLOW_HEADERS) tr.append(el('th', { scope: 'col' }, h));
  thead.append(tr);
  const body = el('tbody');
  table.append(thead, body);
  return { table, body };
}

function endpointBlock(title: string, e: FlowEndpoint): HTMLElement {
  const s = el('section', { class: 'endpoint', 'aria-label': title });
  s.append(el('h4', {}, `${title}: ${endpointName(e)}`));
  const dl = el('dl');
  const add = (k: string, v?: string | number) => {
    if (v === undefined || v === '') return;
    dl.append(el('dt', {}, k), el('dd', {}, String(v)));
  };
  add('kind', e.kind);
  add('namespace', e.namespace);
  add('pod', e.pod);
  add('workload', e.workload);
  add('network set', e.network_set);
  add('address', e.ip);
  add('port', e.port);
  add('identity', e.identity);
  const labels = Object.entries(e.labels ?? {});
  if (labels.length) {
    dl.append(el('dt', {}, 'labels'));
    const dd = el('dd');
    for (const [k, v] of labels) dd.append(el('span', { class: 'label' }, `${k}=${v}`), ' ');
    dl.append(dd);
  }
  s.append(dl);
  return s;
}

function traceBlock(title: string, entries: string[], direction: string): HTMLElement {
  const s = el('section', { class: 'trace', 'aria-label': title });
  s.append(el('h4', {}, title));
  if (!entries.length) {
    s.append(el('p', {}, 'no policy applied'));
    return s;
  }
  const ol = el('ol');
  for (const raw of entries) {
    const h = parseTrace(raw);
    const li = el('li', { class: `hit action-${h.action}` });
    const code = el('code', {}, raw);
    li.append(code, ' ');
    if (!h.hidden) {
      const a = el('a', { href: `#/policies/${encodeURIComponent(h.policy)}` }, `policy ${h.tier}|${h.policy}`);
      li.append(a, ` ${ruleLabel(h, direction)} → ${h.action}`);
    } else li.append('(a policy outside your scope)');
    ol.append(li);
  }
  s.append(ol);
  return s;
}

/** The detail of one flow: both endpoints, counters, and the enforced and pending traces with policy links. */
export function flowDetail(r: FlowRecord): HTMLElement {
  const d = el('section', { class: 'flow-detail', 'aria-label': 'Flow detail' });
  d.append(el('h3', {}, `${endpointName(r.src)} → ${endpointName(r.dst)}  ${port(r)}  ${verdictText(r)}`));
  const meta = el('dl', { class: 'meta' });
  const add = (k: string, v: string | number | undefined) => v !== undefined && meta.append(el('dt', {}, k), el('dd', {}, String(v)));
  add('time', `${r.start_time} … ${r.end_time}`);
  add('node', r.node);
  add('direction', `${r.direction} (reported at the ${r.reporter === 'src' ? 'source' : 'destination'})`);
  add('drop reason', r.drop_reason);
  add('packets', `${r.packets_src_to_dst} → / ${r.packets_dst_to_src} ←`);
  add('bytes', `${formatBytes(r.bytes_src_to_dst)} → / ${formatBytes(r.bytes_dst_to_src)} ←`);
  add('connections', `${r.flows_started} started, ${r.flows_completed} completed, ${r.flows_open} open`);
  if (r.tcp_flags?.length) add('TCP flags', r.tcp_flags.join(' '));
  d.append(meta, endpointBlock('Source', r.src), endpointBlock('Destination', r.dst));
  d.append(traceBlock('Enforced trace', r.enforced_trace, r.direction));
  if (r.pending_trace?.length || r.pending_verdict)
    d.append(traceBlock(`Pending trace (staged: ${r.pending_verdict ?? 'no change'})`, r.pending_trace ?? [], r.direction));
  return d;
}

/**
 * A live table: records arrive in batches (up to thousands a second) and are drawn once per animation frame,
 * newest first, at most MAX_ROWS rows. Scrolling away from the top pauses drawing; "Resume" catches up.
 */
export class LiveTable {
  private buffer: FlowRecord[] = [];
  private pending: FlowRecord[] = [];
  private frame = 0;
  paused = false;
  received = 0;
  drawn = 0;
  private abort: AbortController | null = null;
  private status: HTMLElement;
  private resume: HTMLButtonElement;

  constructor(
    private scroller: HTMLElement,
    private body: HTMLTableSectionElement,
    bar: HTMLElement,
    private open: (r: FlowRecord) => void,
  ) {
    this.status = el('span', { role: 'status', class: 'live-status' });
    this.resume = el('button', { type: 'button', hidden: '' }, 'Resume');
    this.resume.addEventListener('click', () => {
      this.scroller.scrollTop = 0;
      this.setPaused(false);
    });
    bar.append(this.status, this.resume);
    scroller.addEventListener('scroll', () => this.setPaused(this.scroller.scrollTop > 4));
  }

  private setPaused(p: boolean) {
    if (p === this.paused) return;
    this.paused = p;
    this.resume.hidden = !p;
    if (p) this.fillOlder();
    else this.schedule();
    this.updateStatus();
  }

  /** Paused: the older buffered rows below the live window, so the whole buffer can be scrolled through. */
  private fillOlder() {
    const have = this.body.rows.length;
    if (have >= this.buffer.length) return;
    const frag = document.createDocumentFragment();
    for (const r of this.buffer.slice(have, MAX_ROWS)) frag.append(flowRow(r, this.open));
    this.body.append(frag);
  }

  private updateStatus() {
    const n = this.pending.length;
    this.status.textContent = this.paused ? `Paused — ${n} new flow${n === 1 ? '' : 's'} waiting` : `${this.received} flows`;
  }

  push(recs: FlowRecord[]) {
    this.received += recs.length;
    for (const r of recs) this.pending.push(r);
    if (this.pending.length > MAX_BUFFER) this.pending.splice(0, this.pending.length - MAX_BUFFER);
    this.schedule();
  }

  private schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  private draw() {
    if (this.paused) {
      this.updateStatus();
      return;
    }
    const batch = this.pending;
    this.pending = [];
    // Newest first. Only the live window is drawn (a burst of thousands costs a window's worth of rows);
    // the buffer keeps MAX_ROWS for when the reader scrolls away.
    const fresh = batch.slice(-MAX_ROWS).reverse();
    this.buffer = fresh.concat(this.buffer).slice(0, MAX_ROWS);
    const draw = fresh.slice(0, LIVE_ROWS);
    const frag = document.createDocumentFragment();
    for (const r of draw) frag.append(flowRow(r, this.open));
    this.body.prepend(frag);
    while (this.body.rows.length > LIVE_ROWS) this.body.deleteRow(-1);
    this.drawn += fresh.length;
    this.updateStatus();
  }

  clear() {
    this.buffer = [];
    this.pending = [];
    this.received = 0;
    this.body.replaceChildren();
    this.updateStatus();
  }

  /** (Re)starts the query; with `follow` it keeps streaming until stop(). */
  start(args: string[], follow: boolean, onError: (e: unknown) => void) {
    this.stop();
    this.clear();
    this.abort = new AbortController();
    followFlows(args, follow, (recs) => this.push(recs), this.abort.signal).catch((e) => {
      if ((e as Error).name !== 'AbortError') onError(e);
    });
  }

  stop() {
    this.abort?.abort();
    this.abort = null;
  }
}
