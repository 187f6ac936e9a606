import { afterEach, describe, expect, it } from 'vitest';
import type { Me } from './api';
import { ApiError } from './api';
import { renderBoard, type ApplyPreview, type Board, type BoardApi } from './policies';

const admin: Me = { user: 'token:admin', role: 'admin', namespaces: null, tiers: null, canWrite: true };
const viewer: Me = { user: 'token:v', role: 'read-only', namespaces: null, tiers: null, canWrite: false };

const board: Board = {
  revision: 7,
  window: '24h',
  tiers: [{ metadata: { name: 'app' }, spec: { order: 100 } }],
  policies: [
    {
      kind: 'NetworkPolicy', namespace: 'shop', name: 'cart', tier: 'app', staged: false, traceName: 'shop/cart',
      object: { apiVersion: 'porin.io/v1', kind: 'NetworkPolicy', metadata: { name: 'cart', namespace: 'shop', resourceVersion: '5' }, spec: { tier: 'app', selector: "app == 'cart'", ingress: [{ action: 'Allow' }] } },
    },
  ],
  hits: [],
  preview: 'preview',
};

const preview: ApplyPreview = {
  window: '24h', records: 9, allowedToDenied: 1, deniedToAllowed: 1,
  items: [{ kind: 'NetworkPolicy', namespace: 'shop', name: 'cart', action: 'configured' }],
  flipped: [
    { from: 'shop/frontend', to: 'shop/cart', protocol: 'tcp', port: 9000, allowedBefore: true, allowedAfter: false, flows: 4, before: 'ingress app|shop/cart|0|allow', after: 'ingress app|shop/cart|0|deny' },
    { from: 'shop/admin', to: 'shop/cart', protocol: 'tcp', port: 22, allowedBefore: false, allowedAfter: true, flows: 1, before: 'ingress default deny', after: 'ingress app|shop/cart|1|allow' },
  ],
};

function fakeApi(refuse?: string): BoardApi & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    board: async () => structuredClone(board),
    preview: async (y, w) => {
      calls.push(`preview ${w} ${y.includes('Deny') ? 'deny' : 'allow'}`);
      if (refuse) throw new ApiError(403, refuse);
      return structuredClone(preview);
    },
    apply: async (y, dry) => {
      calls.push(`${dry ? 'dry-run' : 'apply'} ${y.includes('Deny') ? 'deny' : 'allow'}`);
      return { revision: 8, items: [{ namespace: 'shop', name: 'cart', action: 'configured' }] };
    },
  };
}

const flush = async () => {
  for (let i = 0; i < 4; i++) await new Promise((r) => setTimeout(r, 0));
};
const button = (root: HTMLElement, name: string | RegExp) =>
  [...root.querySelectorAll('button')].find((b) => (typeof name === 'string' ? b.textContent === name : name.test(b.textContent ?? ''))) as HTMLButtonElement | undefined;

async function openEditor(api: BoardApi): Promise<{ root: HTMLElement; ta: HTMLTextAreaElement }> {
  const root = document.createElement('div');
  document.body.append(root);
  await renderBoard(root, admin, undefined, api);
  button(root, 'Edit shop/cart')!.click();
  const ta = root.querySelector('form[aria-label="Edit shop/cart"] textarea[aria-label="Policy YAML"]') as HTMLTextAreaElement;
  expect(ta.value).toContain("selector: app == 'cart'");
  expect(ta.value).not.toContain('resourceVersion');
  ta.value = ta.value.replace('action: Allow', 'action: Deny');
  return { root, ta };
}

afterEach(() => document.body.replaceChildren());

describe('policy board apply', () => {
  it('shows the preview of the flows that would flip, and applies only on confirmation', async () => {
    const api = fakeApi();
    const { root } = await openEditor(api);
    button(root, 'Apply')!.click();
    await flush();
    expect(api.calls).toEqual(['preview 24h deny']);
    const box = root.querySelector('section[aria-label="Preview of the apply"]')!;
    expect(box).not.toBeNull();
    expect(box.querySelector('.preview-summary')?.textContent).toContain('1 allowed → denied (breaking), 1 denied → allowed, of 9 flow records over the last 24h');
    expect(box.querySelector('.preview-summary')?.textContent).toContain('shop/cart configured');
    const rows = [...box.querySelectorAll('tbody tr')];
    expect(rows.map((r) => r.getAttribute('aria-label'))).toEqual([
      'shop/frontend → shop/cart tcp/9000: allowed → denied, breaking',
      'shop/admin → shop/cart tcp/22: denied → allowed',
    ]);
    expect(rows[0].classList.contains('breaks')).toBe(true);
    expect(rows[1].classList.contains('breaks')).toBe(false);
    expect(rows[0].textContent).toContain('allowed → DENIED (breaks)');
    expect(rows[0].textContent).toContain('ingress app|shop/cart|0|deny');
    expect(root.querySelector('[role="status"]')?.textContent).toContain('Nothing is applied until you confirm');
    // Nothing applied yet; the confirmation names what breaks.
    expect(api.calls.some((c) => c.startsWith('apply'))).toBe(false);
    button(root, 'Confirm apply (breaks 1)')!.click();
    await flush();
    expect(api.calls).toEqual(['preview 24h deny', 'apply deny']);
    expect(root.querySelector('[role="status"]')?.textContent).toBe('Applied at revision 8: shop/cart configured');
    expect(root.querySelector('section[aria-label="Preview of the apply"]')).toBeNull();
  });

  it('an edit after the preview withdraws the confirmation', async () => {
    const api = fakeApi();
    const { root, ta } = await openEditor(api);
    button(root, 'Apply')!.click();
    await flush();
    const confirm = button(root, /^Confirm apply/)!;
    expect(confirm).toBeDefined();
    ta.value = ta.value.replace('action: Deny', 'action: Allow');
    ta.dispatchEvent(new Event('input'));
    expect(button(root, /^Confirm apply/)).toBeUndefined();
    expect(root.querySelector('section[aria-label="Preview of the apply"]')).toBeNull();
    confirm.click(); // a stale reference does nothing either
    await flush();
    expect(api.calls).toEqual(['preview 24h deny']);
    expect(root.querySelector('[role="status"]')?.textContent).toContain('The YAML changed since the preview');
  });

  it('a refused preview offers no confirmation', async () => {
    const api = fakeApi('token:s may not write NetworkPolicy "bank/x"');
    const { root } = await openEditor(api);
    button(root, 'Apply')!.click();
    await flush();
    expect(button(root, /^Confirm apply/)).toBeUndefined();
    expect(root.querySelector('[role="status"]')?.textContent).toBe('Would be refused: token:s may not write NetworkPolicy "bank/x"');
    expect(api.calls).toEqual(['preview 24h deny']);
  });

  it('a read-only token gets no editor', async () => {
    const root = document.createElement('div');
    await renderBoard(root, viewer, undefined, fakeApi());
    expect(root.querySelector('article[aria-label="Policy app|shop/cart"]')).not.toBeNull();
    expect(button(root, 'Edit shop/cart')).toBeUndefined();
  });
});
