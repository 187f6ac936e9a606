import { describe, expect, it } from 'vitest';
import type { Graph, GraphNode } from './api';
import { parseNdjson } from './api';
import { EDGE_STYLE, StableLayout, applyFilter, diffGraph, edgeName, emptyFilter, flowArgsFor, nodeName, observeArgs, orderPolicies, orderTiers, parseTrace } from './model';

const ns = (n: string): GraphNode => ({ id: `ns:${n}`, kind: 'namespace', label: n, namespace: n });
const wl = (n: string, w: string, labels: Record<string, string> = { app: w }): GraphNode => ({
  id: `wl:${n}/${w}`, kind: 'workload', label: w, namespace: n, parent: `ns:${n}`, labels, pods: [w],
});

function shop(): Graph {
  return {
    window: '15m',
    generated: '',
    nodes: [ns('shop'), wl('shop', 'frontend'), wl('shop', 'payment', { app: 'payment', pci: 'true' }), ns('ops'), wl('ops', 'monitoring'), { id: 'internet', kind: 'internet', label: 'public internet' }],
    edges: [
      { id: 'a', source: 'wl:shop/frontend', target: 'wl:shop/payment', verdict: 'denied', connections: 3, packets: 3, bytes: 180, records: 1, lastSeen: 't1', ports: ['tcp/9000'] },
      { id: 'b', source: 'wl:ops/monitoring', target: 'wl:shop/payment', verdict: 'allowed', connections: 1, packets: 10, bytes: 900, records: 1, lastSeen: 't1', ports: ['tcp/9000'] },
      { id: 'c', source: 'wl:shop/frontend', target: 'internet', verdict: 'would-deny', connections: 1, packets: 2, bytes: 100, records: 1, lastSeen: 't1', ports: ['tcp/443'] },
    ],
  };
}

describe('accessible names', () => {
  it('names workloads by namespace/workload and edges by from → to with the verdict', () => {
    const g = shop();
    const m = new Map(g.nodes.map((n) => [n.id, n]));
    expect(nodeName(m.get('wl:shop/frontend')!)).toBe('shop/frontend');
    expect(nodeName(m.get('ns:shop')!)).toBe('namespace shop');
    expect(edgeName(g.edges[0], m)).toBe('shop/frontend → shop/payment, denied');
    expect(edgeName(g.edges[2], m)).toBe('shop/frontend → public internet, would deny (staged)');
  });
  it('never distinguishes verdicts by colour alone', () => {
    const styles = Object.values(EDGE_STYLE);
    expect(new Set(styles.map((s) => s.line)).size).toBe(3);
    expect(new Set(styles.map((s) => s.arrow)).size).toBe(3);
    expect(new Set(styles.map((s) => s.color)).size).toBe(3);
  });
});

describe('stable layout', () => {
  it('keeps every position when nodes are added', () => {
    const l = new StableLayout();
    const g = shop();
    l.place(g.nodes);
    const before = new Map(g.nodes.filter((n) => n.kind !== 'namespace').map((n) => [n.id, { ...l.position(n.id)! }]));
    const added = l.place([...g.nodes, wl('shop', 'cart'), ns('new'), wl('new', 'x'), { id: 'private', kind: 'private', label: 'private network' }]);
    expect([...added.keys()].sort()).toEqual(['private', 'wl:new/x', 'wl:shop/cart']);
    for (const [id, p] of before) expect(l.position(id)).toEqual(p);
    // No two nodes share a slot.
    const all = [...before.keys(), ...added.keys()].map((id) => JSON.stringify(l.position(id)));
    expect(new Set(all).size).toBe(all.length);
  });
});

describe('diff', () => {
  it('adds, updates and removes by id', () => {
    const a = shop();
    const b = shop();
    b.edges[0] = { ...b.edges[0], connections: 5 };
    b.edges.pop();
    b.nodes.push(wl('shop', 'cart'));
    const d = diffGraph(a, b);
    expect(d.addNodes.map((n) => n.id)).toEqual(['wl:shop/cart']);
    expect(d.updateEdges.map((e) => e.id)).toEqual(['a']);
    expect(d.removeEdges).toEqual(['c']);
    expect(d.removeNodes).toEqual([]);
    expect(diffGraph(b, b)).toEqual({ addNodes: [], removeNodes: [], updateNodes: [], addEdges: [], removeEdges: [], updateEdges: [] });
  });
});

describe('filter', () => {
  it('filters by verdict, namespace, label and search text', () => {
    const g = shop();
    const f = emptyFilter();
    f.verdicts = new Set(['denied']);
    expect([...applyFilter(g, f).edges]).toEqual(['a']);
    const f2 = emptyFilter();
    f2.namespaces = new Set(['ops']);
    const k2 = applyFilter(g, f2);
    expect(k2.nodes.has('wl:shop/payment')).toBe(false);
    expect(k2.nodes.has('wl:ops/monitoring')).toBe(true);
    expect(k2.nodes.has('ns:ops')).toBe(true);
    expect(k2.edges.size).toBe(0);
    const f3 = emptyFilter();
    f3.label = 'pci=true';
    expect([...applyFilter(g, f3).nodes].filter((id) => id.startsWith('wl:'))).toEqual(['wl:shop/payment']);
    const f4 = emptyFilter();
    f4.text = 'monitor';
    const k4 = applyFilter(g, f4);
    expect([...k4.edges]).toEqual(['b']);
    expect(k4.nodes.has('wl:shop/payment')).toBe(true);
    expect(k4.nodes.has('wl:shop/frontend')).toBe(false);
  });
});

describe('flow queries', () => {
  it('selects an edge by both ends and its verdict', () => {
    const g = shop();
    const nodes = new Map(g.nodes.map((n) => [n.id, n]));
    expect(flowArgsFor({ edge: g.edges[0], nodes }, '15m')).toEqual([
      '--since', '15m', '--from-namespace', 'shop', '--from-label', "app == 'frontend'", '--to-namespace', 'shop', '--to-label', "app == 'payment'", '--verdict', 'denied',
    ]);
    expect(flowArgsFor({ node: nodes.get('wl:ops/monitoring'), nodes }, '5m')).toEqual(['--since', '5m', '--namespace', 'ops', '--label', "app == 'monitoring'"]);
  });
  it('turns the filter form into porin observe arguments', () => {
    expect(observeArgs({ namespace: 'shop, ops', verdict: 'denied', since: '1h', not: '--protocol udp' })).toEqual([
      '--since', '1h', '--namespace', 'shop', '--namespace', 'ops', '--verdict', 'denied', '--not', '--protocol', 'udp',
    ]);
    expect(observeArgs({})).toEqual([]);
  });
  it('parses NDJSON across chunk boundaries, skipping keep-alives and lag notes', () => {
    const r1 = parseNdjson('{"verdict":"denied","a":1}\n\n{"lagged":3}\n{"verdict":"all');
    expect(r1.records.length).toBe(1);
    const r2 = parseNdjson(r1.rest + 'owed"}\n');
    expect(r2.records.map((r) => r.verdict)).toEqual(['allowed']);
    expect(r2.rest).toBe('');
  });
  it('reads trace entries', () => {
    expect(parseTrace('platform|pci-isolation|1|deny')).toMatchObject({ tier: 'platform', policy: 'pci-isolation', rule: '1', action: 'deny', hidden: false });
    expect(parseTrace('-|(outside your scope)|-|deny').hidden).toBe(true);
  });
});

describe('policy board order', () => {
  it('orders tiers by order then name, default last-ish, and policies by order then name', () => {
    const tiers = orderTiers(
      [{ metadata: { name: 'app' }, spec: { order: 500 } }, { metadata: { name: 'platform' }, spec: { order: 100 } }, { metadata: { name: 'zz' } }],
      [{ kind: 'NetworkPolicy', namespace: 'shop', name: 'x', tier: 'default', staged: false, traceName: 'shop/x', object: {} }],
    );
    expect(tiers.map((t) => t.name)).toEqual(['platform', 'app', 'default', 'zz']);
    const ps = orderPolicies([
      { kind: 'NetworkPolicy', namespace: 'a', name: 'b', tier: 'default', staged: false, traceName: 'a/b', object: { spec: { order: 2000 } } },
      { kind: 'NetworkPolicy', namespace: 'a', name: 'k', tier: 'default', staged: false, traceName: 'a/knp.k', object: { apiVersion: 'networking.k8s.io/v1' } },
      { kind: 'NetworkPolicy', namespace: 'a', name: 'a', tier: 'default', staged: false, traceName: 'a/a', object: { spec: { order: 10 } } },
    ]);
    expect(ps.map((p) => p.traceName)).toEqual(['a/a', 'a/knp.k', 'a/b']);
  });
});
