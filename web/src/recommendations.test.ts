import { describe, expect, it, vi } from 'vitest';
import type { Me } from './api';
import { canAct, previewView, renderRecommendations, type RecApi, type Recommendation } from './recommendations';

const admin: Me = { user: 'token:admin', role: 'admin', namespaces: null, tiers: null, canWrite: true };
const viewer: Me = { user: 'token:v', role: 'read-only', namespaces: null, tiers: null, canWrite: false };
const shopTeam: Me = { user: 'token:s', role: 'scoped', namespaces: ['shop'], tiers: ['namespace-isolation'], canWrite: true };

function rec(ns: string, status: string): Recommendation {
  return {
    namespace: ns, name: `namespace-isolation.${ns}-recommendation`, tier: 'namespace-isolation', status,
    stagedAction: status === 'Dismissed' ? 'Ignore' : 'Learn', lastUpdated: '2026-12-03T10:00:00Z', ingressRules: 2, egressRules: 1,
    object: { kind: 'StagedNetworkPolicy', metadata: { name: `namespace-isolation.${ns}-recommendation`, namespace: ns }, spec: { stagedAction: 'Learn' } },
  };
}

function fakeApi(items: Recommendation[]): RecApi & { acts: string[] } {
  const acts: string[] = [];
  return {
    acts,
    list: async () => ({ items: [...items] }),
    preview: async (ns) => ({
      namespace: ns, window: '24h', records: 12, allowedToDenied: 1, deniedToAllowed: 0,
      flipped: [{ from: 'shop/frontend', to: 'shop/cart', protocol: 'tcp', port: 9000, allowedBefore: true, allowedAfter: false, flows: 3, before: 'egress default allow', after: 'egress namespace-isolation|shop/x|-1|deny' }],
    }),
    act: async (ns, verb) => {
      acts.push(`${verb} ${ns}`);
      const i = items.findIndex((r) => r.namespace === ns);
      if (verb === 'dismiss') items[i] = rec(ns, 'Dismissed');
      if (verb === 'relearn') items[i] = rec(ns, 'Learning');
      if (verb === 'accept') items.splice(i, 1);
      return {};
    },
  };
}

const flush = () => new Promise((r) => setTimeout(r, 0));
const buttons = (root: HTMLElement) => [...root.querySelectorAll('button')].map((b) => b.textContent);

describe('recommendations view', () => {
  it('lists each namespace with its status; admin can promote, dismiss and relearn', async () => {
    const items = [rec('shop', 'Stable'), rec('ops', 'Learning')];
    const api = fakeApi(items);
    const root = document.createElement('div');
    await renderRecommendations(root, admin, api);
    const cards = [...root.querySelectorAll('article')];
    expect(cards.map((c) => c.getAttribute('aria-label'))).toEqual(['Recommendation for ops', 'Recommendation for shop']);
    expect(cards[1].querySelector('[aria-label="Status"]')?.textContent).toBe('Stable');
    expect(buttons(root)).toContain('Promote shop');
    (root.querySelector('article[aria-label="Recommendation for shop"] button:nth-of-type(3)') as HTMLButtonElement).click(); // Dismiss
    await flush();
    await flush();
    expect(api.acts).toEqual(['dismiss shop']);
    const shop = root.querySelector('article[aria-label="Recommendation for shop"]')!;
    expect(shop.querySelector('[aria-label="Status"]')?.textContent).toBe('Dismissed');
    expect([...shop.querySelectorAll('button')].map((b) => b.textContent)).toEqual(['Preview shop', 'Relearn shop']);
    [...shop.querySelectorAll('button')].find((b) => b.textContent === 'Relearn shop')!.click();
    await flush();
    await flush();
    [...root.querySelectorAll('button')].find((b) => b.textContent === 'Promote shop')!.click();
    await flush();
    await flush();
    expect(api.acts).toEqual(['dismiss shop', 'relearn shop', 'accept shop']);
    expect(root.querySelector('article[aria-label="Recommendation for shop"]')).toBeNull();
  });

  it('read-only sees the recommendations and their preview but gets no action button', async () => {
    const api = fakeApi([rec('shop', 'Stabilizing')]);
    const act = vi.spyOn(api, 'act');
    const root = document.createElement('div');
    await renderRecommendations(root, viewer, api);
    expect(buttons(root)).toEqual(['Preview shop']);
    expect(root.textContent).toContain('can read this recommendation but not decide it');
    (root.querySelector('button') as HTMLButtonElement).click();
    await flush();
    const table = root.querySelector('table.flips')!;
    expect(table.querySelector('caption')?.textContent).toBe('Flows that would flip in shop');
    expect(table.querySelector('tbody tr')?.className).toBe('breaks');
    expect(act).not.toHaveBeenCalled();
  });

  it('a scoped token acts only in its namespaces and tiers', () => {
    expect(canAct(shopTeam, 'shop', 'namespace-isolation')).toBe(true);
    expect(canAct(shopTeam, 'ops', 'namespace-isolation')).toBe(false);
    expect(canAct({ ...shopTeam, tiers: ['default'] }, 'shop', 'namespace-isolation')).toBe(false);
    expect(canAct(viewer, 'shop', 'namespace-isolation')).toBe(false);
  });

  it('an empty preview says so', () => {
    const p = previewView({ namespace: 'ops', window: '24h', records: 5, allowedToDenied: 0, deniedToAllowed: 0, flipped: [] });
    expect(p.textContent).toContain('No observed flow would change verdict');
  });
});
