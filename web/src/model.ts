// Pure logic of the console (no DOM): graph layout and incremental updates, accessible names, filters,
// trace parsing, `porin observe` argument building. Component tests cover these.

import type { FlowRecord, FlowEndpoint, Graph, GraphEdge, GraphNode } from './api';

export type Verdict = GraphEdge['verdict'];

/** Colour-blind-safe (Okabe–Ito) colours, and a line style and arrow shape per verdict, so colour is never the only cue. */
export const EDGE_STYLE: Record<Verdict, { color: string; line: 'solid' | 'dashed' | 'dotted'; arrow: string; label: string }> = {
  allowed: { color: '#0072B2', line: 'solid', arrow: 'triangle', label: 'allowed' },
  denied: { color: '#D55E00', line: 'dashed', arrow: 'tee', label: 'denied' },
  'would-deny': { color: '#E69F00', line: 'dotted', arrow: 'diamond', label: 'would deny (staged)' },
};

/** How a node reads for screen readers and tests: `shop/frontend`, `namespace shop`, `public internet`. */
export function nodeName(n: GraphNode): string {
  switch (n.kind) {
    case 'namespace':
      return `namespace ${n.label}`;
    case 'workload':
      return n.namespace ? `${n.namespace}/${n.label}` : n.label;
    case 'networkset':
      return n.namespace ? `network set ${n.namespace}/${n.label}` : `network set ${n.label}`;
    default:
      return n.label;
  }
}

/** How an edge reads: `shop/frontend → shop/payment, denied`. */
export function edgeName(e: GraphEdge, nodes: Map<string, GraphNode>): string {
  const s = nodes.get(e.source);
  const t = nodes.get(e.target);
  return `${s ? nodeName(s) : e.source} → ${t ? nodeName(t) : e.target}, ${EDGE_STYLE[e.verdict].label}`;
}

export interface GraphFilter {
  text: string;
  namespaces: Set<string>;
  verdicts: Set<Verdict>;
  /** `key=value` or `key` */
  label: string;
}

export function emptyFilter(): GraphFilter {
  return { text: '', namespaces: new Set(), verdicts: new Set(['allowed', 'denied', 'would-deny']), label: '' };
}

function labelMatches(n: GraphNode, label: string): boolean {
  if (!label.trim()) return true;
  const [k, v] = label.split('=', 2).map((s) => s.trim());
  const l = n.labels ?? {};
  return v === undefined ? k in l : l[k] === v;
}

/** Which nodes and edges a filter keeps. An edge stays when its verdict is selected and both ends stay. */
export function applyFilter(g: Graph, f: GraphFilter): { nodes: Set<string>; edges: Set<string> } {
  const text = f.text.trim().toLowerCase();
  const keepLeaf = (n: GraphNode) =>
    (f.namespaces.size === 0 || (n.namespace != null && f.namespaces.has(n.namespace)) || n.namespace == null) &&
    labelMatches(n, f.label);
  const leaves = g.nodes.filter((n) => n.kind !== 'namespace' && keepLeaf(n));
  const kept = new Set(leaves.map((n) => n.id));
  const edges = new Set<string>();
  const matched = new Set<string>();
  if (text) {
    for (const n of leaves) if (nodeName(n).toLowerCase().includes(text)) matched.add(n.id);
  }
  for (const e of g.edges) {
    if (!f.verdicts.has(e.verdict) || !kept.has(e.source) || !kept.has(e.target)) continue;
    if (text && !matched.has(e.source) && !matched.has(e.target)) continue;
    edges.add(e.id);
  }
  let nodes: Set<string>;
  if (text) {
    nodes = new Set(matched);
    for (const e of g.edges) if (edges.has(e.id)) (nodes.add(e.source), nodes.add(e.target));
  } else {
    nodes = kept;
  }
  for (const n of g.nodes) if (n.kind === 'namespace' && g.nodes.some((c) => c.parent === n.id && nodes.has(c.id))) nodes.add(n.id);
  return { nodes, edges };
}

export interface Point {
  x: number;
  y: number;
}

const CELL = 90;
const NS_GAP = 70;

/**
 * A stable layout: namespaces are boxes in a row-major grid, their workloads a grid inside; nodes outside
 * namespaces (network sets, private network, public internet) sit in a column on the left. Positions already
 * given are never changed — a new node takes the next free slot of its group, so live updates do not move
 * what the reader is looking at.
 */
export class StableLayout {
  private pos = new Map<string, Point>();
  private groups = new Map<string, { origin: Point; count: number }>();
  private outside = 0;
  private colHeights: number[];

  /** `perRow` slots per row inside a namespace box, `cols` columns of boxes. */
  constructor(
    private perRow = 4,
    cols = 3,
  ) {
    this.colHeights = new Array(cols).fill(0);
  }

  position(id: string): Point | undefined {
    return this.pos.get(id);
  }

  /** Places every node not placed yet; returns the new positions. */
  place(nodes: GraphNode[]): Map<string, Point> {
    const added = new Map<string, Point>();
    const width = this.perRow * CELL + NS_GAP;
    for (const ns of nodes) {
      if (ns.kind !== 'namespace') continue;
      const name = ns.namespace ?? ns.label;
      if (this.groups.has(name)) continue;
      // A new namespace box goes to the shortest column, sized for its members now (later members extend it
      // downwards; the next box in that column starts below the reserved height).
      const members = nodes.filter((n) => n.parent === ns.id).length;
      const rows = (Math.max(1, Math.ceil(Math.max(members, 1) / this.perRow)) + 1) * 1.4;
      let col = 0;
      for (let c = 1; c < this.colHeights.length; c++) if (this.colHeights[c] < this.colHeights[col]) col = c;
      const origin = { x: CELL * 3 + col * width, y: this.colHeights[col] };
      this.colHeights[col] += rows * CELL + NS_GAP;
      this.groups.set(name, { origin, count: 0 });
    }
    for (const n of nodes) {
      if (n.kind === 'namespace' || this.pos.has(n.id)) continue;
      let p: Point;
      const g = n.namespace != null ? this.groups.get(n.namespace) : undefined;
      if (g) {
        const i = g.count++;
        // Staggered rows and columns: no three members of a namespace sit on one line, so an edge between two
        // of them does not run through a third.
        const col = i % this.perRow;
        const row = Math.floor(i / this.perRow);
        p = { x: g.origin.x + col * CELL + (row % 2) * (CELL / 2), y: g.origin.y + row * CELL * 1.4 + (col % 2) * CELL * 0.6 };
      } else {
        p = { x: 0, y: this.outside++ * CELL * 1.5 };
      }
      this.pos.set(n.id, p);
      added.set(n.id, p);
    }
    return added;
  }
}

export interface GraphDiff {
  addNodes: GraphNode[];
  removeNodes: string[];
  updateNodes: GraphNode[];
  addEdges: GraphEdge[];
  removeEdges: string[];
  updateEdges: GraphEdge[];
}

/** What changed between two graphs (by id): the view adds, removes and updates in place, no re-layout. */
export function diffGraph(prev: Graph | null, next: Graph): GraphDiff {
  const pn = new Map((prev?.nodes ?? []).map((n) => [n.id, n]));
  const pe = new Map((prev?.edges ?? []).map((e) => [e.id, e]));
  const nn = new Set(next.nodes.map((n) => n.id));
  const ne = new Set(next.edges.map((e) => e.id));
  const d: GraphDiff = { addNodes: [], removeNodes: [], updateNodes: [], addEdges: [], removeEdges: [], updateEdges: [] };
  for (const n of next.nodes) {
    const o = pn.get(n.id);
    if (!o) d.addNodes.push(n);
    else if (JSON.stringify(o) !== JSON.stringify(n)) d.updateNodes.push(n);
  }
  for (const id of pn.keys()) if (!nn.has(id)) d.removeNodes.push(id);
  for (const e of next.edges) {
    const o = pe.get(e.id);
    if (!o) d.addEdges.push(e);
    else if (o.connections !== e.connections || o.packets !== e.packets || o.bytes !== e.bytes || o.lastSeen !== e.lastSeen)
      d.updateEdges.push(e);
  }
  for (const id of pe.keys()) if (!ne.has(id)) d.removeEdges.push(id);
  return d;
}

/** The `porin observe` arguments that select an edge's or a node's flows. */
export function flowArgsFor(sel: { node?: GraphNode; edge?: GraphEdge; nodes: Map<string, GraphNode> }, window: string): string[] {
  const args = ['--since', window];
  const ep = (n: GraphNode | undefined, side: 'from' | 'to' | null): string[] => {
    if (!n) return [];
    const pre = side ? `--${side}-` : '--';
    switch (n.kind) {
      case 'workload': {
        const a = [`${pre}namespace`, n.namespace ?? ''];
        const app = n.labels?.app;
        if (app) a.push(`${pre}label`, `app == '${app.replace(/'/g, '')}'`);
        else for (const p of n.pods ?? []) a.push(`${pre}pod`, `${n.namespace}/${p}`);
        return a;
      }
      case 'namespace':
        return [`${pre}namespace`, n.namespace ?? n.label];
      default:
        return [];
    }
  };
  if (sel.edge) {
    args.push(...ep(sel.nodes.get(sel.edge.source), 'from'), ...ep(sel.nodes.get(sel.edge.target), 'to'));
    if (sel.edge.verdict === 'denied') args.push('--verdict', 'denied');
    else if (sel.edge.verdict === 'would-deny') args.push('--verdict', 'would-deny');
    else args.push('--verdict', 'allowed');
  } else if (sel.node) {
    args.push(...ep(sel.node, null));
  }
  return args;
}

/** Does a record belong to an edge (client-side check on live records)? */
export function edgeVerdictOf(r: FlowRecord): Verdict {
  if (r.verdict === 'denied') return 'denied';
  return r.pending_verdict === 'would_deny' ? 'would-deny' : 'allowed';
}

export interface TraceHit {
  tier: string;
  policy: string;
  rule: string;
  action: string;
  raw: string;
  hidden: boolean;
}

export function parseTrace(entry: string): TraceHit {
  const [tier = '', policy = '', rule = '', action = ''] = entry.split('|');
  return { tier, policy, rule, action, raw: entry, hidden: policy === '(outside your scope)' };
}

/** `rule -1` is the tier's end (no rule matched); other rules are 0-based indices of the direction's rules. */
export function ruleLabel(h: TraceHit, direction: string): string {
  if (h.rule === '-1') return 'end of tier';
  if (h.rule === '-' || h.rule === '') return '';
  return `${direction} rule ${h.rule}`;
}

export function endpointName(e: FlowEndpoint): string {
  if (e.namespace && e.pod) return `${e.namespace}/${e.pod}`;
  if (e.namespace && e.workload) return `${e.namespace}/${e.workload}`;
  if (e.kind === 'network_set' && e.network_set) return `netset:${e.namespace ? e.namespace + '/' : ''}${e.network_set}`;
  if (e.kind === 'unknown' && !e.ip) return 'outside your scope';
  if (e.kind === 'world') return `world:${e.ip ?? ''}`;
  if (e.kind === 'host') return 'host';
  return e.ip ?? 'unknown';
}

export interface FlowFilterForm {
  namespace: string;
  fromPod: string;
  toPod: string;
  label: string;
  ip: string;
  port: string;
  protocol: string;
  verdict: string;
  policy: string;
  since: string;
  not: string;
}

/** The table's filter form as `porin observe` arguments (values of one field: comma-separated, OR-ed). */
export function observeArgs(f: Partial<FlowFilterForm>): string[] {
  const out: string[] = [];
  const multi = (flag: string, v?: string) => {
    for (const x of (v ?? '').split(',').map((s) => s.trim()).filter(Boolean)) out.push(flag, x);
  };
  if (f.since) out.push('--since', f.since);
  multi('--namespace', f.namespace);
  multi('--from-pod', f.fromPod);
  multi('--to-pod', f.toPod);
  multi('--label', f.label);
  multi('--ip', f.ip);
  multi('--port', f.port);
  multi('--protocol', f.protocol);
  multi('--verdict', f.verdict);
  multi('--policy', f.policy);
  if (f.not && f.not.trim()) {
    // `--not --verdict allowed`: the next flag is negated.
    const [flag, ...rest] = f.not.trim().split(/\s+/);
    if (flag.startsWith('--') && rest.length) out.push('--not', flag, rest.join(' '));
  }
  return out;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
  return `${(n / 1024 ** 3).toFixed(1)} GiB`;
}

export interface PolicyEntry {
  kind: string;
  namespace: string | null;
  name: string;
  tier: string;
  staged: boolean;
  traceName: string;
  object: any;
}

export interface TierEntry {
  metadata: { name: string };
  spec?: { order?: number; defaultAction?: string };
}

/** Tiers by order (missing = last, ties by name); `default` exists even when not stored. */
export function orderTiers(tiers: TierEntry[], policies: PolicyEntry[]): { name: string; order: number | null; defaultAction: string }[] {
  const m = new Map<string, { name: string; order: number | null; defaultAction: string }>();
  for (const t of tiers) m.set(t.metadata.name, { name: t.metadata.name, order: t.spec?.order ?? null, defaultAction: t.spec?.defaultAction ?? 'Deny' });
  for (const p of policies) if (!m.has(p.tier)) m.set(p.tier, { name: p.tier, order: p.tier === 'default' ? 1_000_000 : null, defaultAction: 'Deny' });
  return [...m.values()].sort((a, b) => (a.order ?? Infinity) - (b.order ?? Infinity) || a.name.localeCompare(b.name));
}

/** Policies of a tier by order (K8s policies: 1000; missing: last), then name. */
export function orderPolicies(ps: PolicyEntry[]): PolicyEntry[] {
  const ord = (p: PolicyEntry) => (p.kind.includes('Kubernetes') || p.object?.apiVersion?.startsWith('networking.k8s.io') ? 1000 : p.object?.spec?.order ?? Infinity);
  return [...ps].sort((a, b) => ord(a) - ord(b) || a.traceName.localeCompare(b.traceName));
}

/** An edge as drawn: from the source's border to the target's, bent (`c`) when other edges join the same pair. */
export interface EdgeShape {
  edge: GraphEdge;
  x1: number;
  y1: number;
  /** Control point of the quadratic curve (the midpoint of a straight edge). */
  cx: number;
  cy: number;
  x2: number;
  y2: number;
  /** Line width in model units (connections 1 … 1,000 map to 1.5 … 5). */
  width: number;
}

/** Half the drawn size of a node (34 × 34 with a 2-unit border): edges start and end at this box. */
export const NODE_HALF = 18;
/** How far apart the edges between one pair of nodes bend (model units). */
const BEND = 26;

export function edgeWidth(connections: number): number {
  const t = Math.min(1, Math.max(0, (connections - 1) / 999));
  return 1.5 + 3.5 * t;
}

/** Distance from a box's centre to its border along the unit direction (ux, uy). */
function toBorder(ux: number, uy: number, half: number): number {
  const ax = Math.abs(ux);
  const ay = Math.abs(uy);
  return Math.min(ax > 1e-9 ? half / ax : Infinity, ay > 1e-9 ? half / ay : Infinity);
}

/**
 * The drawn geometry of every edge whose ends have positions. Edges between the same two nodes (either direction,
 * several verdicts) fan out as curves on both sides of the straight line, so none hides another.
 */
export function edgeShapes(edges: GraphEdge[], pos: (id: string) => Point | undefined, half: (id: string) => number = () => NODE_HALF): EdgeShape[] {
  const pairs = new Map<string, GraphEdge[]>();
  for (const e of edges) {
    if (e.source === e.target) continue;
    const k = e.source < e.target ? `${e.source}\u0000${e.target}` : `${e.target}\u0000${e.source}`;
    const l = pairs.get(k);
    if (l) l.push(e);
    else pairs.set(k, [e]);
  }
  const out: EdgeShape[] = [];
  for (const group of pairs.values()) {
    // Bend relative to the pair's canonical direction (lower id → higher id), so opposite edges separate.
    group.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    for (let i = 0; i < group.length; i++) {
      const e = group[i];
      const s = pos(e.source);
      const t = pos(e.target);
      if (!s || !t) continue;
      const [a, b] = e.source < e.target ? [s, t] : [t, s];
      const dx = b.x - a.x;
      const dy = b.y - a.y;
      const len = Math.sqrt(dx * dx + dy * dy);
      if (len < 1e-6) continue;
      const bend = (i - (group.length - 1) / 2) * BEND;
      const mx = (s.x + t.x) / 2 - (dy / len) * bend * 2;
      const my = (s.y + t.y) / 2 + (dx / len) * bend * 2;
      // Ends on the node boxes, along the direction towards the control point.
      const u1x = mx - s.x;
      const u1y = my - s.y;
      const l1 = Math.sqrt(u1x * u1x + u1y * u1y);
      const u2x = mx - t.x;
      const u2y = my - t.y;
      const l2 = Math.sqrt(u2x * u2x + u2y * u2y);
      const d1 = toBorder(u1x / l1, u1y / l1, half(e.source));
      const d2 = toBorder(u2x / l2, u2y / l2, half(e.target));
      out.push({
        edge: e,
        x1: s.x + (u1x / l1) * d1,
        y1: s.y + (u1y / l1) * d1,
        cx: mx,
        cy: my,
        x2: t.x + (u2x / l2) * d2,
        y2: t.y + (u2y / l2) * d2,
        width: edgeWidth(e.connections),
      });
    }
  }
  return out;
}

/** The point of a drawn edge at t ∈ [0, 1]. */
export function edgePoint(s: EdgeShape, t: number): Point {
  const u = 1 - t;
  return { x: u * u * s.x1 + 2 * u * t * s.cx + t * t * s.x2, y: u * u * s.y1 + 2 * u * t * s.cy + t * t * s.y2 };
}

function segmentDistance(px: number, py: number, a: Point, b: Point): number {
  const dx = b.x - a.x;
  const dy = b.y - a.y;
  const l2 = dx * dx + dy * dy;
  const t = l2 > 0 ? Math.min(1, Math.max(0, ((px - a.x) * dx + (py - a.y) * dy) / l2)) : 0;
  return Math.hypot(px - (a.x + t * dx), py - (a.y + t * dy));
}

/** The drawn edge nearest to (x, y) within `tolerance` (model units), among those `visible` keeps; later edges
 * (drawn on top) win ties. */
export function hitEdge(shapes: EdgeShape[], x: number, y: number, tolerance: number, visible?: (e: GraphEdge) => boolean): GraphEdge | undefined {
  let best: GraphEdge | undefined;
  let bestD = Infinity;
  const steps = 12;
  for (const s of shapes) {
    if (visible && !visible(s.edge)) continue;
    const r = tolerance + s.width / 2;
    // Cheap reject: outside the curve's bounding box grown by the tolerance.
    if (x < Math.min(s.x1, s.cx, s.x2) - r || x > Math.max(s.x1, s.cx, s.x2) + r) continue;
    if (y < Math.min(s.y1, s.cy, s.y2) - r || y > Math.max(s.y1, s.cy, s.y2) + r) continue;
    let prev = edgePoint(s, 0);
    for (let i = 1; i <= steps; i++) {
      const p = edgePoint(s, i / steps);
      const d = segmentDistance(x, y, prev, p);
      if (d <= r && d <= bestD) {
        bestD = d;
        best = s.edge;
      }
      prev = p;
    }
  }
  return best;
}

/** A verdict's dash pattern in model units at `zoom`: the same on-screen length at every zoom (a pattern fixed
 * in model units shrinks to sub-pixel dashes when zoomed out: invisible, and thousands of segments per edge). */
export function dashPattern(line: 'solid' | 'dashed' | 'dotted', zoom: number): number[] {
  const z = Math.max(zoom, 1e-3);
  if (line === 'dashed') return [8 / z, 4 / z];
  if (line === 'dotted') return [2 / z, 3 / z];
  return [];
}

/**
 * The graph as drawn with some namespaces collapsed: a collapsed namespace stands for its workloads, and the edges
 * of its workloads are drawn to and from it, one per peer and verdict with the counters summed (edges inside it
 * are not drawn). `keep` is what the filter keeps; the result holds only what is drawn.
 */
export function collapseGraph(
  g: Graph,
  collapsed: Set<string>,
  keep: { nodes: Set<string>; edges: Set<string> },
): { nodes: Set<string>; edges: GraphEdge[]; members: Map<string, string> } {
  const members = new Map<string, string>(); // workload id → its collapsed namespace's id
  for (const n of g.nodes) if (n.parent && collapsed.has(n.parent)) members.set(n.id, n.parent);
  const nodes = new Set<string>();
  for (const id of keep.nodes) if (!members.has(id)) nodes.add(id);
  const edges: GraphEdge[] = [];
  const merged = new Map<string, GraphEdge>();
  for (const e of g.edges) {
    if (!keep.edges.has(e.id)) continue;
    const s = members.get(e.source);
    const t = members.get(e.target);
    if (!s && !t) {
      edges.push(e);
      continue;
    }
    const source = s ?? e.source;
    const target = t ?? e.target;
    if (source === target) continue;
    const id = `${source}->${target}:${e.verdict}`;
    const m = merged.get(id);
    if (!m) {
      const agg: GraphEdge = { ...e, id, source, target, ports: [...e.ports] };
      merged.set(id, agg);
      edges.push(agg);
      continue;
    }
    m.connections += e.connections;
    m.packets += e.packets;
    m.bytes += e.bytes;
    m.records += e.records;
    if (e.lastSeen > m.lastSeen) m.lastSeen = e.lastSeen;
    for (const p of e.ports) if (!m.ports.includes(p)) m.ports.push(p);
  }
  return { nodes, edges, members };
}
