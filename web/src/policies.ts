// The policy board: tiers in order, their policies in order, per-rule hit counters, staged policies marked,
// the YAML of each policy, and (admin / in-scope tokens) edit and apply: Apply first shows the preview of the
// observed flows the change would flip (allowed → denied marked as breaking), and applies only once confirmed.

import YAML from 'yaml';
import { applyYaml, getJson, previewApply, type Me } from './api';
import { formatBytes, orderPolicies, orderTiers, type PolicyEntry, type TierEntry } from './model';
import type { Flip } from './recommendations';

export interface Hit {
  direction: string;
  entry: string;
  staged: boolean;
  tier: string;
  policy: string;
  rule: string;
  action: string;
  connections: number;
  packets: number;
  bytes: number;
  lastHit: string;
}

export interface Board {
  revision: number;
  window: string;
  tiers: TierEntry[];
  policies: PolicyEntry[];
  hits: Hit[];
  preview: unknown;
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

/** The apply's outcome per object (as its server-side dry run) and the observed flows it would flip. */
export interface ApplyPreview {
  window: string;
  records: number;
  allowedToDenied: number;
  deniedToAllowed: number;
  flipped: Flip[];
  items?: { kind: string; namespace?: string; name: string; action: string }[];
}

interface Outcome {
  name?: string;
  namespace?: string;
  action?: string;
}

/** What the board calls (tests pass fakes). */
export interface BoardApi {
  board(): Promise<Board>;
  preview(yamlText: string, window: string): Promise<ApplyPreview>;
  apply(yamlText: string, dryRun?: boolean): Promise<{ revision?: number; items?: Outcome[] }>;
}

export const liveBoardApi: BoardApi = {
  board: () => getJson<Board>('policies', new URLSearchParams({ window: '24h' })),
  preview: (y, w) => previewApply<ApplyPreview>(y, w),
  apply: (y, d) => applyYaml(y, d) as Promise<{ revision?: number; items?: Outcome[] }>,
};

/** The window of observed flows an apply is previewed against. */
export const PREVIEW_WINDOW = '24h';

function outcomes(items: Outcome[] | undefined): string {
  return (items ?? []).map((i) => `${i.namespace ? `${i.namespace}/` : ''}${i.name ?? ''} ${i.action ?? ''}`.trim()).join(', ');
}

/** The preview of an apply: counts, then the flows that would flip (allowed → denied first, marked as breaking). */
export function applyPreviewView(p: ApplyPreview): HTMLElement {
  const box = el('section', { class: 'preview apply-preview', 'aria-label': 'Preview of the apply' });
  const would = outcomes(p.items);
  box.append(
    el(
      'p',
      { class: 'preview-summary' },
      `${p.allowedToDenied} allowed → denied (breaking), ${p.deniedToAllowed} denied → allowed, of ${p.records} flow records over the last ${p.window}.${would ? ` The apply would leave: ${would}.` : ''}`,
    ),
  );
  if (!p.flipped.length) {
    box.append(el('p', {}, 'No observed flow would change verdict.'));
    return box;
  }
  const t = el('table', { class: 'flips' });
  t.append(el('caption', {}, 'Flows that would flip if applied'));
  const hr = el('tr');
  for (const c of ['From', 'To', 'Port', 'Flows', 'Change', 'Decided now by', 'Decided after by']) hr.append(el('th', { scope: 'col' }, c));
  const head = el('thead');
  head.append(hr);
  const body = el('tbody');
  for (const f of p.flipped) {
    const breaks = f.allowedBefore && !f.allowedAfter;
    const tr = el('tr', { class: breaks ? 'breaks' : 'opens', 'aria-label': `${f.from} → ${f.to} ${f.protocol}/${f.port}: ${breaks ? 'allowed → denied, breaking' : 'denied → allowed'}` });
    const change = breaks ? 'allowed → DENIED (breaks)' : 'denied → allowed';
    for (const c of [f.from, f.to, `${f.protocol}/${f.port}`, String(f.flows), change, f.before, f.after]) tr.append(el('td', {}, c));
    body.append(tr);
  }
  t.append(head, body);
  box.append(t);
  return box;
}

/**
 * The editor of one policy: Apply asks the server for the preview of the flows that would flip and shows it,
 * then "Confirm apply" applies exactly the previewed text (an edit after the preview withdraws the confirmation).
 */
export function editor(name: string, yamlText: string, api: BoardApi, reload: () => void): HTMLFormElement {
  const form = el('form', { class: 'editor', 'aria-label': `Edit ${name}` });
  const ta = el('textarea', { rows: '16', cols: '80', 'aria-label': 'Policy YAML', spellcheck: 'false' });
  ta.value = yamlText;
  const note = el(
    'p',
    { class: 'note' },
    `Apply first shows the observed flows of the last ${PREVIEW_WINDOW} whose verdict the change would flip, then applies on confirmation. Check runs every check of a real apply on the server and writes nothing.`,
  );
  const dry = el('button', { type: 'button' }, 'Check (dry run)');
  const apply = el('button', { type: 'submit' }, 'Apply');
  const cancel = el('button', { type: 'button' }, 'Cancel');
  const out = el('p', { role: 'status' });
  const slot = el('div', { class: 'preview-slot' });
  const confirm = el('button', { type: 'button', class: 'confirm' }, 'Confirm apply');
  let previewed: string | null = null;
  const withdraw = () => {
    previewed = null;
    slot.replaceChildren();
  };
  ta.addEventListener('input', () => {
    if (previewed !== null && ta.value !== previewed) {
      withdraw();
      out.textContent = 'The YAML changed since the preview: Apply again to preview it.';
    }
  });
  cancel.addEventListener('click', () => form.remove());
  dry.addEventListener('click', async () => {
    out.textContent = 'Checking…';
    try {
      const r = await api.apply(ta.value, true);
      out.textContent = `Dry run: would be ${outcomes(r.items)}; nothing written`;
    } catch (e) {
      out.textContent = `Would be refused: ${(e as Error).message}`;
    }
  });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    withdraw();
    const text = ta.value;
    out.textContent = 'Previewing…';
    try {
      const p = await api.preview(text, PREVIEW_WINDOW);
      if (ta.value !== text) return; // edited while the preview ran: the input handler said so
      previewed = text;
      confirm.textContent = p.allowedToDenied ? `Confirm apply (breaks ${p.allowedToDenied})` : 'Confirm apply';
      slot.replaceChildren(applyPreviewView(p), confirm);
      slot.scrollIntoView?.({ block: 'nearest' });
      out.textContent = `Preview ready: ${p.allowedToDenied} allowed → denied, ${p.deniedToAllowed} denied → allowed. Nothing is applied until you confirm.`;
    } catch (e) {
      out.textContent = `Would be refused: ${(e as Error).message}`;
    }
  });
  confirm.addEventListener('click', async () => {
    if (previewed === null || ta.value !== previewed) return;
    const text = previewed;
    withdraw();
    out.textContent = 'Applying…';
    try {
      const r = await api.apply(text);
      out.textContent = `Applied at revision ${r.revision}: ${outcomes(r.items)}`;
      setTimeout(reload, 500);
    } catch (e) {
      out.textContent = `Refused: ${(e as Error).message}`;
    }
  });
  form.append(note, ta, el('br'), dry, apply, cancel, out, slot);
  return form;
}

export function policyAnchor(traceName: string): string {
  return `policy-${traceName.replace(/[^A-Za-z0-9_.:-]/g, '_')}`;
}

function cleanObject(o: any): any {
  const c = structuredClone(o);
  if (c?.metadata) {
    delete c.metadata.resourceVersion;
    delete c.metadata.uid;
    delete c.metadata.creationTimestamp;
    delete c.metadata.generation;
  }
  return c;
}

function ruleSummary(r: any): string {
  const s = JSON.stringify(r);
  return s.length > 160 ? s.slice(0, 157) + '…' : s;
}

function hitCells(hs: Hit[]): string[] {
  if (!hs.length) return ['0', '0', '0 B', 'never'];
  const sum = (k: 'connections' | 'packets' | 'bytes') => hs.reduce((a, h) => a + h[k], 0);
  const last = hs.map((h) => h.lastHit).sort().pop() ?? '';
  return [String(sum('connections')), String(sum('packets')), formatBytes(sum('bytes')), last.replace('T', ' ').slice(0, 19)];
}

function policyCard(p: PolicyEntry, hits: Hit[], me: Me, api: BoardApi, reload: () => void): HTMLElement {
  const card = el('article', { class: `policy${p.staged ? ' staged' : ''}`, id: policyAnchor(p.traceName), 'aria-label': `Policy ${p.tier}|${p.traceName}` });
  const h = el('h4', {}, `${p.traceName}`);
  if (p.staged) h.append(' ', el('span', { class: 'badge staged-badge' }, `STAGED${p.object?.spec?.stagedAction === 'Delete' ? ' (delete)' : ''}`));
  h.append(' ', el('span', { class: 'kind' }, p.kind));
  card.append(h);
  const mine = hits.filter((x) => x.tier === p.tier && x.policy === p.traceName);
  const t = el('table', { class: 'rules' });
  t.append(el('caption', {}, `Rules of ${p.traceName} (hits over the window${p.staged ? '; staged: what it would decide' : ''})`));
  const hr = el('tr');
  for (const c of ['Direction', 'Rule', 'Action', 'Match', 'Connections', 'Packets', 'Bytes', 'Last hit']) hr.append(el('th', { scope: 'col' }, c));
  t.append(el('thead'), el('tbody'));
  t.tHead!.append(hr);
  const k8s = p.kind.includes('Kubernetes');
  for (const dir of ['ingress', 'egress']) {
    const rules: any[] = p.object?.spec?.[dir] ?? [];
    const rows: [string, string, any][] = rules.map((r, i) => [String(i), k8s ? 'Allow' : r.action ?? 'Allow', r]);
    rows.push(['-1', 'end of tier', null]);
    for (const [idx, action, r] of rows) {
      const hs = mine.filter((x) => x.direction === dir && x.rule === idx);
      if (idx === '-1' && !hs.length) continue;
      const tr = el('tr');
      for (const c of [dir, idx === '-1' ? 'end of tier' : idx, action, r ? ruleSummary(r) : '(no rule matched)', ...hitCells(hs)]) tr.append(el('td', {}, c));
      t.tBodies[0].append(tr);
    }
  }
  card.append(t);
  const yamlText = YAML.stringify(cleanObject(p.object));
  const det = el('details');
  det.append(el('summary', {}, 'YAML'), el('pre', { class: 'yaml' }, yamlText));
  card.append(det);
  if (me.canWrite && (me.role === 'admin' || (me.namespaces?.includes(p.namespace ?? '') && me.tiers?.includes(p.tier)))) {
    const edit = el('button', { type: 'button' }, `Edit ${p.traceName}`);
    edit.addEventListener('click', () => edit.after(editor(p.traceName, yamlText, api, reload)));
    card.append(edit);
  }
  return card;
}

export async function renderBoard(root: HTMLElement, me: Me, focus?: string, api: BoardApi = liveBoardApi): Promise<void> {
  const b = await api.board();
  const reload = () => void renderBoard(root, me, focus, api);
  const tiers = orderTiers(b.tiers, b.policies);
  const frag = document.createDocumentFragment();
  frag.append(el('p', { class: 'note' }, `Store revision ${b.revision}; hit counters over the last ${b.window}.${b.preview ? '' : ' Apply previews: not available on this agent.'}`));
  for (const t of tiers) {
    const sec = el('section', { class: 'tier', 'aria-label': `Tier ${t.name}` });
    sec.append(el('h3', {}, `Tier ${t.name}`), el('span', { class: 'tier-meta' }, ` order ${t.order ?? 'last'}, end of tier: ${t.defaultAction}`));
    const ps = orderPolicies(b.policies.filter((p) => p.tier === t.name));
    if (!ps.length) sec.append(el('p', {}, 'No policies in this tier.'));
    for (const p of ps) sec.append(policyCard(p, b.hits, me, api, reload));
    frag.append(sec);
  }
  root.replaceChildren(frag);
  if (focus) {
    const target = document.getElementById(policyAnchor(focus));
    if (target) {
      target.classList.add('focused');
      target.scrollIntoView({ block: 'start' });
      (target.querySelector('details') as HTMLDetailsElement | null)?.setAttribute('open', '');
    }
  }
}
