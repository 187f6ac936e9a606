// The policy board: tiers in order, their policies in order, per-rule hit counters, staged policies marked,
// the YAML of each policy, and (admin / in-scope tokens) edit and apply.

import YAML from 'yaml';
import { applyYaml, getJson, type Me } from './api';
import { formatBytes, orderPolicies, orderTiers, type PolicyEntry, type TierEntry } from './model';

interface Hit {
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

interface Board {
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

function policyCard(p: PolicyEntry, hits: Hit[], me: Me, reload: () => void): HTMLElement {
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
    edit.addEventListener('click', () => {
      const form = el('form', { class: 'editor', 'aria-label': `Edit ${p.traceName}` });
      const ta = el('textarea', { rows: '16', cols: '80', 'aria-label': 'Policy YAML', spellcheck: 'false' });
      ta.value = yamlText;
      const note = el('p', { class: 'note' }, 'Check runs every check of a real apply on the server and writes nothing. A preview of the flows that would flip is not available yet (no preview API on this agent): stage the change (a Staged* kind) to see its effect in the flows first.');
      const dry = el('button', { type: 'button' }, 'Check (dry run)');
      const apply = el('button', { type: 'submit' }, 'Apply');
      const cancel = el('button', { type: 'button' }, 'Cancel');
      const out = el('p', { role: 'status' });
      cancel.addEventListener('click', () => form.remove());
      dry.addEventListener('click', async () => {
        out.textContent = 'Checking…';
        try {
          const r: any = await applyYaml(ta.value, true);
          out.textContent = `Dry run: would be ${(r.items ?? []).map((i: any) => `${i.name ?? ''} ${i.result ?? i.status ?? ''}`).join(', ')}; nothing written`;
        } catch (e) {
          out.textContent = `Would be refused: ${(e as Error).message}`;
        }
      });
      form.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        out.textContent = 'Applying…';
        try {
          const r: any = await applyYaml(ta.value);
          out.textContent = `Applied at revision ${r.revision}: ${(r.items ?? []).map((i: any) => `${i.name ?? ''} ${i.result ?? i.status ?? ''}`).join(', ')}`;
          setTimeout(reload, 500);
        } catch (e) {
          out.textContent = `Refused: ${(e as Error).message}`;
        }
      });
      form.append(note, ta, el('br'), dry, apply, cancel, out);
      edit.after(form);
    });
    card.append(edit);
  }
  return card;
}

export async function renderBoard(root: HTMLElement, me: Me, focus?: string): Promise<void> {
  const b = await getJson<Board>('policies', new URLSearchParams({ window: '24h' }));
  const reload = () => void renderBoard(root, me, focus);
  const tiers = orderTiers(b.tiers, b.policies);
  const frag = document.createDocumentFragment();
  frag.append(el('p', { class: 'note' }, `Store revision ${b.revision}; hit counters over the last ${b.window}.${b.preview ? '' : ' Apply previews: not available on this agent.'}`));
  for (const t of tiers) {
    const sec = el('section', { class: 'tier', 'aria-label': `Tier ${t.name}` });
    sec.append(el('h3', {}, `Tier ${t.name}`), el('span', { class: 'tier-meta' }, ` order ${t.order ?? 'last'}, end of tier: ${t.defaultAction}`));
    const ps = orderPolicies(b.policies.filter((p) => p.tier === t.name));
    if (!ps.length) sec.append(el('p', {}, 'No policies in this tier.'));
    for (const p of ps) sec.append(policyCard(p, b.hits, me, reload));
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
