import { describe, expect, it } from 'vitest';
import type { FlowRecord } from './api';
import { LIVE_ROWS, LiveTable, flowDetail, flowRow, flowTable } from './flows';

function rec(over: Partial<FlowRecord> = {}): FlowRecord {
  return {
    start_time: '2026-12-03T10:00:00.000Z', end_time: '2026-12-03T10:00:01.000Z', node: 'n0', verdict: 'denied', direction: 'ingress', reporter: 'dst', protocol: 'tcp',
    src: { kind: 'pod', namespace: 'shop', pod: 'frontend', labels: { app: 'frontend' }, ip: '10.10.0.10', port: 40000 },
    dst: { kind: 'pod', namespace: 'shop', pod: 'payment', labels: { app: 'payment', pci: 'true' }, ip: '10.10.0.14', port: 9000 },
    enforced_trace: ['platform|pci-isolation|1|deny'], pending_trace: ['default|shop/staged:lock|0|deny'], pending_verdict: 'would_deny',
    packets_src_to_dst: 2, bytes_src_to_dst: 120, packets_dst_to_src: 0, bytes_dst_to_src: 0, flows_started: 1, flows_completed: 0, flows_open: 0, drop_reason: 'drop_policy_deny',
    ...over,
  };
}

describe('flow detail', () => {
  it('shows both endpoints with labels, counters, and both traces linking to the policy', () => {
    const d = flowDetail(rec());
    document.body.replaceChildren(d);
    const text = d.textContent ?? '';
    expect(text).toContain('shop/frontend → shop/payment');
    expect(text).toContain('pci=true');
    expect(text).toContain('app=frontend');
    expect(text).toContain('drop_policy_deny');
    expect(text).toContain('2 → / 0 ←');
    const links = [...d.querySelectorAll('a')].map((a) => a.getAttribute('href'));
    expect(links).toEqual(['#/policies/pci-isolation', `#/policies/${encodeURIComponent('shop/staged:lock')}`]);
    expect(d.querySelector('[aria-label="Enforced trace"]')?.textContent).toContain('platform|pci-isolation|1|deny');
    expect(d.querySelector('[aria-label^="Pending trace"]')?.textContent).toContain('would_deny');
  });
  it('shows hidden trace entries without a link', () => {
    const d = flowDetail(rec({ enforced_trace: ['-|(outside your scope)|-|deny'], pending_trace: [], pending_verdict: undefined, dst: { kind: 'unknown', port: 9000 } }));
    expect(d.querySelectorAll('a').length).toBe(0);
    expect(d.textContent).toContain('outside your scope');
  });
  it('gives each row an accessible name', () => {
    const tr = flowRow(rec(), () => {});
    expect(tr.querySelector('button')?.getAttribute('aria-label')).toBe('Flow shop/frontend → shop/payment tcp/9000 ALLOWED (would deny) at 10:00:01.000'.replace('ALLOWED (would deny)', 'DENIED'));
  });
});

describe('live table', () => {
  it('draws newest first, caps rows, and pauses while scrolled', async () => {
    const { table, body } = flowTable('t');
    const scroller = document.createElement('div');
    const bar = document.createElement('div');
    scroller.append(table);
    document.body.replaceChildren(bar, scroller);
    const t = new LiveTable(scroller, body, bar, () => {});
    const frame = () => new Promise((r) => requestAnimationFrame(() => r(null)));
    t.push([rec({ end_time: '2026-12-03T10:00:01.000Z' }), rec({ end_time: '2026-12-03T10:00:02.000Z' })]);
    await frame();
    await frame();
    expect(body.rows.length).toBe(2);
    expect(body.rows[0].textContent).toContain('10:00:02');
    // Scrolled away from the top: paused; new flows wait.
    scroller.scrollTop = 100;
    Object.defineProperty(scroller, 'scrollTop', { value: 100, configurable: true });
    scroller.dispatchEvent(new Event('scroll'));
    t.push([rec({ end_time: '2026-12-03T10:00:03.000Z' })]);
    await frame();
    await frame();
    expect(body.rows.length).toBe(2);
    expect(bar.textContent).toContain('Paused — 1 new flow waiting');
    Object.defineProperty(scroller, 'scrollTop', { value: 0, configurable: true });
    scroller.dispatchEvent(new Event('scroll'));
    await frame();
    await frame();
    expect(body.rows.length).toBe(3);
    expect(body.rows[0].textContent).toContain('10:00:03');
    const many = Array.from({ length: 2000 }, (_, i) => rec({ end_time: `2026-12-03T11:${String(Math.floor(i / 60)).padStart(2, '0')}:${String(i % 60).padStart(2, '0')}.000Z` }));
    t.push(many);
    await frame();
    await frame();
    // Following: the live window only, newest first.
    expect(body.rows.length).toBe(LIVE_ROWS);
    expect(body.rows[0].textContent).toContain('11:33:19');
    expect(t.received).toBe(2003);
    // Scrolling away shows the whole buffer (500 newest), in order, below what was on screen.
    Object.defineProperty(scroller, 'scrollTop', { value: 100, configurable: true });
    scroller.dispatchEvent(new Event('scroll'));
    expect(body.rows.length).toBe(500);
    // The row below the live window is the (LIVE_ROWS + 1)-th newest record.
    const below = 1999 - LIVE_ROWS;
    expect(body.rows[LIVE_ROWS].textContent).toContain(`11:${String(Math.floor(below / 60)).padStart(2, '0')}:${String(below % 60).padStart(2, '0')}`);
    expect(body.rows[499].textContent).toContain('11:25:00');
  });
});
