// The Recommendations view: the agent's continuous per-namespace staged recommendations (a RecommendationScope),
// their status (Learning → Stabilizing → Stable, or Dismissed), a preview of the observed flows that would flip
// if one were accepted, and Promote / Dismiss / Relearn for admin and in-scope tokens. Read-only tokens see and
// cannot act (the server refuses them too: the buttons are only a convenience).

import YAML from 'yaml';
import { getJson, postAction, type Me } from './api';

export interface Recommendation {
  namespace: string;
  name: string;
  tier: string;
  status: 'Learning' | 'Stabilizing' | 'Stable' | 'Dismissed' | string;
  stagedAction: string | null;
  lastUpdated: string | null;
  ingressRules: number;
  egressRules: number;
  object: any;
}

export interface Flip {
  from: string;
  to: string;
  protocol: string;
  port: number;
  allowedBefore: boolean;
  allowedAfter: boolean;
  flows: number;
  before: string;
  after: string;
}

export interface Preview {
  namespace: string;
  window: string;
  records: number;
  allowedToDenied: number;
  deniedToAllowed: number;
  flipped: Flip[];
}

/** What the view calls (tests pass fakes). */
export interface RecApi {
  list(): Promise<{ items: Recommendation[] }>;
  preview(ns: string, window: string): Promise<Preview>;
  act(ns: string, verb: 'accept' | 'dismiss' | 'relearn'): Promise<unknown>;
}

export const liveApi: RecApi = {
  list: () => getJson('recommendations'),
  preview: (ns, window) => getJson(`recommendations/${encodeURIComponent(ns)}/preview`, new URLSearchParams({ window })),
  act: (ns, verb) => postAction(`recommendations/${encodeURIComponent(ns)}/${verb}`),
};

/** May `me` decide the recommendation of `ns` in `tier`? (The server decides; this only hides buttons.) */
export function canAct(me: Me, ns: string, tier: string): boolean {
  if (!me.canWrite) return false;
  if (me.role === 'admin') return true;
  return me.role === 'scoped' && !!me.namespaces?.includes(ns) && !!me.tiers?.includes(tier);
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

export function previewView(p: Preview): HTMLElement {
  const box = el('section', { class: 'preview', 'aria-label': `Preview of ${p.namespace}` });
  if (!p.flipped.length) {
    box.append(el('p', {}, `No observed flow would change verdict if it were promoted (${p.records} flow records over ${p.window}).`));
    return box;
  }
  box.append(el('p', {}, `${p.allowedToDenied} allowed → denied, ${p.deniedToAllowed} denied → allowed (${p.records} flow records over ${p.window}).`));
  const t = el('table', { class: 'flips' });
  t.append(el('caption', {}, `Flows that would flip in ${p.namespace}`));
  const hr = el('tr');
  for (const c of ['From', 'To', 'Port', 'Flows', 'Now', 'After', 'Decided now by', 'Decided after by']) hr.append(el('th', { scope: 'col' }, c));
  const head = el('thead');
  head.append(hr);
  const body = el('tbody');
  for (const f of p.flipped) {
    const tr = el('tr', { class: f.allowedBefore && !f.allowedAfter ? 'breaks' : '' });
    for (const c of [f.from, f.to, `${f.protocol}/${f.port}`, String(f.flows), f.allowedBefore ? 'allowed' : 'denied', f.allowedAfter ? 'allowed' : 'DENIED', f.before, f.after]) tr.append(el('td', {}, c));
    body.append(tr);
  }
  t.append(head, body);
  box.append(t);
  return box;
}

function card(r: Recommendation, me: Me, api: RecApi, reload: () => void): HTMLElement {
  const c = el('article', { class: `recommendation status-${r.status.toLowerCase()}`, 'aria-label': `Recommendation for ${r.namespace}` });
  const h = el('h3', {}, `Namespace ${r.namespace} `);
  h.append(el('span', { class: 'badge', 'aria-label': 'Status' }, r.status));
  c.append(h);
  c.append(el('p', {}, `${r.name} in tier ${r.tier}: ${r.ingressRules} ingress and ${r.egressRules} egress rules; rules last changed ${r.lastUpdated?.replace('T', ' ').replace('Z', '') ?? '-'} UTC.`));
  const det = el('details');
  det.append(el('summary', {}, 'YAML'), el('pre', { class: 'yaml' }, YAML.stringify(r.object)));
  c.append(det);
  const out = el('div', { role: 'status', class: 'rec-out' });
  const bar = el('div', { class: 'rec-actions' });
  const pv = el('button', { type: 'button' }, `Preview ${r.namespace}`);
  pv.addEventListener('click', async () => {
    out.textContent = 'Replaying the observed flows…';
    try {
      out.replaceChildren(previewView(await api.preview(r.namespace, '24h')));
    } catch (e) {
      out.textContent = `Preview failed: ${(e as Error).message}`;
    }
  });
  bar.append(pv);
  if (canAct(me, r.namespace, r.tier)) {
    const verbs: ['accept' | 'dismiss' | 'relearn', string][] =
      r.status === 'Dismissed' ? [['relearn', 'Relearn']] : [['accept', 'Promote'], ['dismiss', 'Dismiss'], ['relearn', 'Relearn']];
    for (const [verb, label] of verbs) {
      const b = el('button', { type: 'button' }, `${label} ${r.namespace}`);
      b.addEventListener('click', async () => {
        b.disabled = true;
        out.textContent = `${label}…`;
        try {
          await api.act(r.namespace, verb);
          out.textContent = verb === 'accept' ? `Promoted: ${r.name} is now an enforced NetworkPolicy.` : verb === 'dismiss' ? 'Dismissed.' : 'Back to learning.';
          reload();
        } catch (e) {
          out.textContent = `Refused: ${(e as Error).message}`;
        } finally {
          b.disabled = false;
        }
      });
      bar.append(b);
    }
  } else {
    bar.append(el('span', { class: 'note' }, ' Your token can read this recommendation but not decide it.'));
  }
  c.append(bar, out);
  return c;
}

/** Renders the list into `root`; returns a function that re-reads it (the page polls it). */
export async function renderRecommendations(root: HTMLElement, me: Me, api: RecApi = liveApi): Promise<() => Promise<void>> {
  const outs = new Map<string, Node[]>();
  const draw = async () => {
    const { items } = await api.list();
    // Keep open previews and messages across refreshes.
    for (const a of root.querySelectorAll<HTMLElement>('article.recommendation')) {
      const ns = a.getAttribute('aria-label')?.replace('Recommendation for ', '') ?? '';
      const o = a.querySelector('.rec-out');
      if (o) outs.set(ns, [...o.childNodes]);
    }
    const frag = document.createDocumentFragment();
    if (!items.length) {
      frag.append(el('p', { class: 'note' }, 'No recommendations. An admin enables them with a RecommendationScope named default (namespaceSpec.recStatus: Enabled).'));
    }
    const sorted = [...items].sort((a, b) => a.namespace.localeCompare(b.namespace));
    for (const r of sorted) {
      const c = card(r, me, api, () => void draw());
      const kept = outs.get(r.namespace);
      if (kept) c.querySelector('.rec-out')!.replaceChildren(...kept);
      frag.append(c);
    }
    root.replaceChildren(frag);
  };
  await draw();
  return draw;
}
