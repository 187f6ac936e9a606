import { describe, expect, it } from 'vitest';
import type { Graph, GraphEdge, GraphNode } from './api';
import { NODE_HALF, applyFilter, collapseGraph, dashPattern, edgeName, edgePoint, edgeShapes, edgeWidth, emptyFilter, hitEdge, type Point } from './model';

const edge = (id: string, source: string, target: string, verdict: GraphEdge['verdict'] = 'allowed', connections = 1): GraphEdge => ({
  id, source, target, verdict, connections, packets: 1, bytes: 1, records: 1, lastSeen: '', ports: [],
});

const pos = new Map<string, Point>([
  ['a', { x: 0, y: 0 }],
  ['b', { x: 200, y: 0 }],
  ['c', { x: 0, y: 300 }],
]);
const at = (id: string) => pos.get(id);

describe('edge layer geometry', () => {
  it('draws a lone edge straight, from border to border of the node boxes', () => {
    const [s] = edgeShapes([edge('ab', 'a', 'b')], at);
    expect([s.x1, s.y1, s.x2, s.y2]).toEqual([NODE_HALF, 0, 200 - NODE_HALF, 0]);
    expect([s.cx, s.cy]).toEqual([100, 0]);
    expect(s.width).toBe(1.5);
  });

  it('bends edges that share a pair apart, opposite directions included, so none hides another', () => {
    const shapes = edgeShapes([edge('ab', 'a', 'b', 'allowed'), edge('ba', 'b', 'a', 'denied'), edge('ab2', 'a', 'b', 'would-deny')], at);
    expect(shapes).toHaveLength(3);
    const mids = shapes.map((s) => edgePoint(s, 0.5).y);
    expect(new Set(mids.map((y) => Math.round(y))).size).toBe(3);
    // Every one is still tappable at its own midpoint, and the tap picks that one.
    for (const s of shapes) {
      const m = edgePoint(s, 0.5);
      expect(hitEdge(shapes, m.x, m.y, 3)?.id).toBe(s.edge.id);
    }
  });

  it('skips edges without positioned ends and self-loops', () => {
    expect(edgeShapes([edge('ax', 'a', 'x'), edge('aa', 'a', 'a')], at)).toEqual([]);
  });

  it('maps connections to widths like the old style (1 → 1.5, 1,000 and more → 5)', () => {
    expect(edgeWidth(1)).toBe(1.5);
    expect(edgeWidth(1000)).toBe(5);
    expect(edgeWidth(1e6)).toBe(5);
  });

  it('hits an edge near its line only, and not a hidden one', () => {
    const shapes = edgeShapes([edge('ab', 'a', 'b'), edge('ac', 'a', 'c', 'denied')], at);
    expect(hitEdge(shapes, 100, 2, 4)?.id).toBe('ab');
    expect(hitEdge(shapes, 1, 150, 4)?.id).toBe('ac');
    expect(hitEdge(shapes, 100, 40, 4)).toBeUndefined();
    expect(hitEdge(shapes, 100, 2, 4, (e) => e.id !== 'ab')).toBeUndefined();
  });

  it('keeps dash patterns the same length on screen at every zoom', () => {
    expect(dashPattern('solid', 0.1)).toEqual([]);
    for (const z of [0.1, 1, 3]) {
      expect(dashPattern('dashed', z).map((x) => x * z)).toEqual([8, 4]);
      expect(dashPattern('dotted', z).map((x) => x * z)).toEqual([2, 3]);
    }
  });
});

describe('collapsed namespaces', () => {
  const ns = (n: string): GraphNode => ({ id: `ns:${n}`, kind: 'namespace', label: n, namespace: n });
  const wl = (n: string, w: string): GraphNode => ({ id: `wl:${n}/${w}`, kind: 'workload', label: w, namespace: n, parent: `ns:${n}` });
  const g: Graph = {
    window: '15m',
    generated: '',
    nodes: [ns('shop'), wl('shop', 'frontend'), wl('shop', 'payment'), ns('ops'), wl('ops', 'mon'), { id: 'internet', kind: 'internet', label: 'public internet' }],
    edges: [
      { ...edge('fp', 'wl:shop/frontend', 'wl:shop/payment', 'denied', 3), ports: ['tcp/9000'] },
      { ...edge('mf', 'wl:ops/mon', 'wl:shop/frontend', 'allowed', 2), ports: ['tcp/80'], lastSeen: 't1' },
      { ...edge('mp', 'wl:ops/mon', 'wl:shop/payment', 'allowed', 5), ports: ['tcp/9000'], lastSeen: 't2' },
      { ...edge('md', 'wl:ops/mon', 'wl:shop/payment', 'denied', 1), ports: ['tcp/22'] },
      edge('fi', 'wl:shop/frontend', 'internet', 'would-deny'),
    ],
  };
  const nodes = new Map(g.nodes.map((n) => [n.id, n]));

  it('draws everything when nothing is collapsed', () => {
    const d = collapseGraph(g, new Set(), applyFilter(g, emptyFilter()));
    expect(d.edges.map((e) => e.id)).toEqual(g.edges.map((e) => e.id));
    expect(d.nodes.has('wl:shop/frontend')).toBe(true);
  });

  it('joins a collapsed namespace\'s edges to it, one per peer and verdict, counters summed, inner edges dropped', () => {
    const d = collapseGraph(g, new Set(['ns:shop']), applyFilter(g, emptyFilter()));
    expect(d.nodes.has('wl:shop/frontend') || d.nodes.has('wl:shop/payment')).toBe(false);
    expect(d.nodes.has('ns:shop') && d.nodes.has('wl:ops/mon')).toBe(true);
    const byId = new Map(d.edges.map((e) => [e.id, e]));
    expect([...byId.keys()].sort()).toEqual(['ns:shop->internet:would-deny', 'wl:ops/mon->ns:shop:allowed', 'wl:ops/mon->ns:shop:denied']);
    const allowed = byId.get('wl:ops/mon->ns:shop:allowed')!;
    expect([allowed.connections, allowed.lastSeen, allowed.ports]).toEqual([7, 't2', ['tcp/80', 'tcp/9000']]);
    expect(byId.get('wl:ops/mon->ns:shop:denied')!.connections).toBe(1);
    expect(edgeName(allowed, nodes)).toBe('ops/mon → namespace shop, allowed');
    // The input graph is not changed by the sums.
    expect(g.edges[1].connections).toBe(2);
  });

  it('still follows the filter (a verdict filtered out is not summed in)', () => {
    const f = emptyFilter();
    f.verdicts = new Set(['denied']);
    const d = collapseGraph(g, new Set(['ns:shop', 'ns:ops']), applyFilter(g, f));
    expect(d.edges.map((e) => e.id)).toEqual(['ns:ops->ns:shop:denied']);
  });
});
