import './style.css';
import { ApiError, getJson, login, logout, session, type FlowRecord, type Graph, type Me } from './api';
import { GraphView, type Selection } from './graph';
import { EDGE_STYLE, emptyFilter, flowArgsFor, nodeName, observeArgs, type FlowFilterForm, type Verdict } from './model';
import { LiveTable, flowDetail, flowTable } from './flows';
import { renderBoard } from './policies';
import { renderRecommendations } from './recommendations';

declare global {
  interface Window {
    __porin: { graphRenderMs: number[]; graphUpdates: number; table?: LiveTable; cy?: unknown; graph?: GraphView; graphPhases?: Record<string, number> };
  }
}
window.__porin = { graphRenderMs: [], graphUpdates: 0 };

const app = document.getElementById('app')!;
let me: Me | null = null;
let cleanup: (() => void) | null = null;

function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function showError(where: HTMLElement, e: unknown) {
  if (e instanceof ApiError && e.status === 401) {
    me = null;
    route();
    return;
  }
  const p = el('p', { role: 'alert', class: 'error' }, `Error: ${(e as Error).message}`);
  where.prepend(p);
}

function renderLogin(message = '') {
  cleanup?.();
  cleanup = null;
  const main = el('main', { class: 'login' });
  const form = el('form', { 'aria-label': 'Sign in' });
  form.append(el('h1', {}, 'Porin console'));
  const label = el('label', { for: 'token' }, 'Porin token');
  const input = el('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'off', required: '' });
  const btn = el('button', { type: 'submit' }, 'Sign in');
  const out = el('p', { role: 'alert', class: 'error' }, message);
  form.append(label, input, btn, out);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    btn.disabled = true;
    try {
      me = await login(input.value.trim());
      input.value = '';
      if (!location.hash || location.hash === '#/login') location.hash = '#/graph';
      route();
    } catch (e) {
      out.textContent = `Sign-in failed: ${(e as Error).message}`;
    } finally {
      btn.disabled = false;
    }
  });
  form.append(el('p', { class: 'note' }, 'The token is exchanged for a session cookie; it is never stored by the page or put in a URL.'));
  main.append(form);
  app.replaceChildren(main);
  input.focus();
}

function header(active: string): HTMLElement {
  const h = el('header');
  h.append(el('span', { class: 'brand' }, 'Porin'));
  const nav = el('nav', { 'aria-label': 'Views' });
  for (const [id, name] of [
    ['graph', 'Service graph'],
    ['flows', 'Flows'],
    ['policies', 'Policies'],
    ['recommendations', 'Recommendations'],
  ]) {
    const a = el('a', { href: `#/${id}` }, name);
    if (id === active) a.setAttribute('aria-current', 'page');
    nav.append(a);
  }
  h.append(nav);
  const who = el('span', { class: 'who' }, `${me?.user} (${me?.role}${me?.namespaces ? `: ${me.namespaces.join(', ')}` : ''}${me?.tiers ? ` | tiers ${me.tiers.join(', ')}` : ''})`);
  const out = el('button', { type: 'button' }, 'Sign out');
  out.addEventListener('click', async () => {
    await logout();
    me = null;
    renderLogin('Signed out.');
  });
  h.append(who, out);
  return h;
}

function legend(): HTMLElement {
  const l = el('div', { class: 'legend', 'aria-label': 'Edge legend' });
  for (const [v, s] of Object.entries(EDGE_STYLE)) {
    const item = el('span', { class: 'legend-item' });
    const svg = `<svg width="46" height="12" aria-hidden="true"><line x1="2" y1="6" x2="40" y2="6" stroke="${s.color}" stroke-width="3" ${s.line === 'dashed' ? 'stroke-dasharray="8 4"' : s.line === 'dotted' ? 'stroke-dasharray="2 3"' : ''}/></svg>`;
    item.innerHTML = svg;
    item.append(` ${s.label} (${s.line}, ${s.arrow} arrow)`);
    item.dataset.verdict = v;
    l.append(item);
  }
  return l;
}

function renderGraph() {
  const main = el('main', { class: 'graph-page' });
  const bar = el('div', { class: 'toolbar', role: 'search', 'aria-label': 'Graph filters' });
  const win = el('select', { 'aria-label': 'Window' });
  for (const w of ['5m', '15m', '1h', '6h', '24h']) win.append(el('option', { value: w }, `last ${w}`));
  win.value = '15m';
  const search = el('input', { type: 'search', placeholder: 'Search workloads', 'aria-label': 'Search' });
  const nsSel = el('select', { 'aria-label': 'Namespace' });
  nsSel.append(el('option', { value: '' }, 'all namespaces'));
  const label = el('input', { type: 'text', placeholder: 'label (key=value)', 'aria-label': 'Label' });
  const verdictBoxes = (['allowed', 'denied', 'would-deny'] as Verdict[]).map((v) => {
    const l = el('label', { class: 'check' });
    const c = el('input', { type: 'checkbox', value: v });
    c.checked = true;
    l.append(c, ` ${EDGE_STYLE[v].label}`);
    return { l, c };
  });
  bar.append(win, search, nsSel, label, ...verdictBoxes.map((x) => x.l), legend());
  const body = el('div', { class: 'graph-body' });
  const canvas = el('div', { id: 'cy', role: 'img', 'aria-label': 'Service graph (the lists beside it name every node and edge)' });
  const side = el('aside', { class: 'side', 'aria-label': 'Selection' });
  const a11y = el('nav', { class: 'graph-list', 'aria-label': 'Graph items' });
  side.append(el('p', { class: 'note' }, 'Select a node or an edge to see its flows.'));
  body.append(canvas, side, a11y);
  main.append(bar, body);
  app.append(main);

  const view = new GraphView(canvas, a11y);
  // Tests and benchmarks read the rendered graph (positions, styles) through this handle.
  window.__porin.cy = view.cy;
  window.__porin.graph = view;
  const filter = emptyFilter();
  let last: Graph | null = null;
  let selection: Selection = {};
  const readFilter = () => {
    filter.text = search.value;
    filter.label = label.value;
    filter.namespaces = new Set(nsSel.value ? [nsSel.value] : []);
    filter.verdicts = new Set(verdictBoxes.filter((x) => x.c.checked).map((x) => x.c.value as Verdict));
    view.applyFilter(filter);
  };
  for (const i of [search, label]) i.addEventListener('input', readFilter);
  for (const i of [nsSel, ...verdictBoxes.map((x) => x.c)]) i.addEventListener('change', readFilter);

  const showSelection = async (s: Selection) => {
    selection = s;
    side.replaceChildren();
    const end = (id: string) => {
      const n = view.nodeById(id);
      return n ? nodeName(n) : id.replace(/^wl:/, '');
    };
    const title = s.edge ? `Flows ${end(s.edge.source)} → ${end(s.edge.target)}` : s.node ? `Flows of ${nodeName(s.node)}` : '';
    side.append(el('h2', {}, title));
    if (s.edge) {
      const e = s.edge;
      side.append(el('p', {}, `${EDGE_STYLE[e.verdict].label}: ${e.connections} connections, ${e.packets} packets, ports ${e.ports.join(', ')}, last ${e.lastSeen}`));
    } else if (s.node?.labels && Object.keys(s.node.labels).length) {
      side.append(el('p', {}, `labels ${Object.entries(s.node.labels).map(([k, v]) => `${k}=${v}`).join(' ')}; pods ${(s.node.pods ?? []).join(', ')}`));
    }
    const { table, body: tb } = flowTable(title);
    const detail = el('div', { class: 'detail-slot' });
    const scroller = el('div', { class: 'table-scroll small' });
    scroller.append(table);
    const liveBar = el('div', { class: 'live-bar' });
    side.append(liveBar, scroller, detail);
    const t = new LiveTable(scroller, tb, liveBar, (r: FlowRecord) => detail.replaceChildren(flowDetail(r)));
    const args = flowArgsFor({ ...s, nodes: view.nodeMap }, win.value);
    args.push('--last', '200');
    t.start(args, false, (e) => showError(side, e));
  };
  view.onSelect = (s) => void showSelection(s);

  let inflight = false;
  let alive = true;
  const refresh = async () => {
    if (inflight) return;
    inflight = true;
    try {
      const g = await getJson<Graph>('graph', new URLSearchParams({ window: win.value }));
      // The view was left while the answer was on its way: nothing to draw into.
      if (!alive) return;
      const t0 = performance.now();
      const namespaces = [...new Set(g.nodes.filter((n) => n.kind === 'namespace').map((n) => n.label))];
      if (namespaces.join() !== [...nsSel.options].slice(1).map((o) => o.value).join()) {
        const cur = nsSel.value;
        nsSel.replaceChildren(el('option', { value: '' }, 'all namespaces'), ...namespaces.map((n) => el('option', { value: n }, n)));
        nsSel.value = cur;
      }
      const t1 = performance.now();
      view.update(g, filter);
      const t2 = performance.now();
      last = g;
      await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
      // Left while painting: this view's timing is not the next view's.
      if (!alive) return;
      window.__porin.graphPhases = { update: t2 - t1, paint: performance.now() - t2 };
      window.__porin.graphRenderMs.push(performance.now() - t0);
      window.__porin.graphUpdates++;
      main.dataset.updates = String(window.__porin.graphUpdates);
    } catch (e) {
      showError(main, e);
    } finally {
      inflight = false;
    }
  };
  win.addEventListener('change', () => {
    void refresh();
    if (selection.edge || selection.node) void showSelection(selection);
  });
  void refresh();
  const timer = setInterval(refresh, 3000);
  cleanup = () => {
    alive = false;
    clearInterval(timer);
    view.destroy();
    void last;
  };
}

function renderFlows() {
  const main = el('main', { class: 'flows-page' });
  const form = el('form', { class: 'toolbar', role: 'search', 'aria-label': 'Flow filters' });
  const fields: [keyof FlowFilterForm, string, string][] = [
    ['namespace', 'Namespace', 'shop'],
    ['fromPod', 'From pod', 'ns/pod'],
    ['toPod', 'To pod', 'ns/pod'],
    ['label', 'Label', "app == 'web'"],
    ['ip', 'IP', '10.0.0.1'],
    ['port', 'Port', '9000'],
    ['protocol', 'Protocol', 'tcp'],
    ['verdict', 'Verdict', 'denied, would-deny'],
    ['policy', 'Policy', 'platform/pci-isolation'],
    ['since', 'Since', '15m'],
    ['not', 'Not', '--verdict allowed'],
  ];
  const inputs = new Map<string, HTMLInputElement>();
  for (const [k, name, ph] of fields) {
    const l = el('label', { class: 'field' }, name + ' ');
    const i = el('input', { type: 'text', name: k, placeholder: ph, 'aria-label': name });
    if (k === 'since') i.value = '15m';
    inputs.set(k, i);
    l.append(i);
    form.append(l);
  }
  const followL = el('label', { class: 'check' });
  const follow = el('input', { type: 'checkbox', name: 'follow' });
  follow.checked = true;
  followL.append(follow, ' Follow');
  const go = el('button', { type: 'submit' }, 'Apply filters');
  form.append(followL, go);
  const liveBar = el('div', { class: 'live-bar' });
  const { table, body } = flowTable('Flows (newest first)');
  const scroller = el('div', { class: 'table-scroll' });
  scroller.append(table);
  const detail = el('div', { class: 'detail-slot' });
  const split = el('div', { class: 'flows-split' });
  split.append(scroller, detail);
  main.append(form, liveBar, split);
  app.append(main);
  const t = new LiveTable(scroller, body, liveBar, (r) => detail.replaceChildren(flowDetail(r)));
  window.__porin.table = t;
  const run = () => {
    const f: Partial<FlowFilterForm> = {};
    for (const [k] of fields) f[k] = inputs.get(k)!.value;
    const args = observeArgs(f);
    if (!follow.checked) args.push('--last', '500');
    t.start(args, follow.checked, (e) => showError(main, e));
  };
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    run();
  });
  run();
  cleanup = () => t.stop();
}

function renderPolicies(focus?: string) {
  const main = el('main', { class: 'policies-page' });
  main.append(el('h2', {}, 'Policy board'));
  const root = el('div');
  main.append(root);
  app.append(main);
  renderBoard(root, me!, focus).catch((e) => showError(main, e));
}

function renderRecs() {
  const main = el('main', { class: 'recommendations-page' });
  main.append(el('h2', {}, 'Recommendations'));
  main.append(el('p', { class: 'note' }, 'One staged policy per namespace, learned from observed traffic: Learning while it changes, Stabilizing, then Stable. Preview shows the observed flows whose verdict would flip if it were promoted.'));
  const root = el('div');
  main.append(root);
  app.append(main);
  let timer: ReturnType<typeof setInterval> | undefined;
  renderRecommendations(root, me!)
    .then((redraw) => {
      timer = setInterval(() => redraw().catch((e) => showError(main, e)), 3000);
    })
    .catch((e) => showError(main, e));
  cleanup = () => clearInterval(timer);
}

async function route() {
  cleanup?.();
  cleanup = null;
  if (!me) {
    me = await session().catch(() => null);
    if (!me) return renderLogin();
  }
  const [, view = 'graph', ...rest] = location.hash.replace(/^#/, '').split('/');
  app.replaceChildren(header(view));
  if (view === 'flows') renderFlows();
  else if (view === 'recommendations') renderRecs();
  else if (view === 'policies') renderPolicies(rest.length ? decodeURIComponent(rest.join('/')) : undefined);
  else renderGraph();
}

window.addEventListener('hashchange', () => void route());
void route();
