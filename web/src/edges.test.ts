import { describe, expect, it } from 'vitest';
import type { GraphEdge } from './api';
import { NODE_HALF, dashPattern, edgePoint, edgeShapes, edgeWidth, hitEdge, type Point } from './model';

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
