// The service graph: Cytoscape.js renders; positions come from StableLayout (no re-layout on updates). A
// parallel, keyboard-reachable list of buttons gives every node and edge an accessible name.
//
// Namespaces are drawn as plain nodes behind their workloads, sized and placed here from the layout's positions,
// not as Cytoscape compound parents: with compounds, every style or data change of a child walks its parents and
// descendants (profiled: most of the first draw's CPU time at 500 workloads / 5,000 edges).
//
// Edges are not Cytoscape elements: an edge layer (a canvas under Cytoscape's) draws them, all edges of one
// verdict and width in one path and one stroke, with the namespace boxes beneath them. Profiled at 500 workloads
// and 5,000 edges, Cytoscape's per-edge elements (creation, style, control points, bounding boxes, one stroke and
// two arrow draws each, the garbage) were most of the first draw's main-thread time. Cytoscape still draws and
// picks the nodes; a tap that hits no workload is tested against the edges here.

import cytoscape from 'cytoscape';
import type { Graph, GraphEdge, GraphNode } from './api';
import {
  EDGE_STYLE,
  NODE_HALF,
  StableLayout,
  applyFilter,
  collapseGraph,
  dashPattern,
  diffGraph,
  edgeName,
  edgePoint,
  edgeShapes,
  hitEdge,
  nodeName,
  type EdgeShape,
  type GraphFilter,
  emptyFilter,
  type Point,
  type Verdict,
} from './model';

export interface Selection {
  node?: GraphNode;
  edge?: GraphEdge;
}

const NODE_COLORS: Record<string, string> = {
  workload: '#ffffff',
  networkset: '#F0E442',
  private: '#cccccc',
  internet: '#56B4E9',
  host: '#999999',
  other: '#eeeeee',
};

const NODE_SHAPES: Record<string, string> = {
  workload: 'round-rectangle',
  networkset: 'hexagon',
  private: 'barrel',
  internet: 'ellipse',
  host: 'rectangle',
  other: 'octagon',
};

/** How near (screen pixels) a tap must be to an edge to select it. */
const TAP_TOLERANCE = 6;
/** Arrowheads smaller than this on screen (pixels) are not drawn. */
const MIN_ARROW_PX = 3;
/** A collapsed namespace is drawn as a square of this size at its box's centre. */
const COLLAPSED_SIZE = 60;

/** Long lists go in chunks of this many items, each skipped by the browser's style and layout while off screen
 * (`content-visibility: auto` per chunk): thousands of items cost a hundred boxes, not thousands. */
const CHUNK = 50;

function chunked(items: HTMLElement[]): HTMLElement[] {
  if (items.length <= CHUNK) return items;
  const out: HTMLElement[] = [];
  for (let i = 0; i < items.length; i += CHUNK) {
    // A presentational wrapper: the items stay the list's items for assistive technology.
    const d = document.createElement('div');
    d.setAttribute('role', 'none');
    d.className = 'graph-chunk';
    d.append(...items.slice(i, i + CHUNK));
    out.push(d);
  }
  return out;
}

export class GraphView {
  cy: cytoscape.Core;
  private layout = new StableLayout();
  private graph: Graph | null = null;
  private nodes = new Map<string, GraphNode>();
  private a11yNamespaces: HTMLElement;
  private a11yNodes: HTMLElement;
  private a11yEdges: HTMLElement;
  private edgeCanvas: HTMLCanvasElement;
  private shapes: EdgeShape[] = [];
  private boxes = new Map<string, { x: number; y: number; w: number; h: number }>();
  /** Node positions as drawn (a node dragged in Cytoscape moves here too). */
  private positions = new Map<string, Point>();
  onSelect: (s: Selection) => void = () => {};

  constructor(
    private container: HTMLElement,
    a11y: HTMLElement,
  ) {
    a11y.innerHTML = '';
    const h0 = document.createElement('h3');
    h0.textContent = 'Namespaces';
    const all = document.createElement('div');
    all.className = 'graph-all';
    for (const [label, c] of [['Collapse all', true], ['Expand all', false]] as const) {
      const b = document.createElement('button');
      b.type = 'button';
      b.textContent = label;
      b.addEventListener('click', () => this.setCollapsed(this.namespaceIds(), c));
      all.append(b);
    }
    this.a11yNamespaces = document.createElement('ul');
    this.a11yNamespaces.setAttribute('aria-label', 'Graph namespaces');
    const h1 = document.createElement('h3');
    h1.textContent = 'Workloads';
    this.a11yNodes = document.createElement('ul');
    this.a11yNodes.setAttribute('aria-label', 'Graph nodes');
    const h2 = document.createElement('h3');
    h2.textContent = 'Connections';
    this.a11yEdges = document.createElement('ul');
    this.a11yEdges.setAttribute('aria-label', 'Graph edges');
    a11y.append(h0, all, this.a11yNamespaces, h1, this.a11yNodes, h2, this.a11yEdges);

    // The edge layer: under Cytoscape's canvases (both stack in the container in document order).
    this.edgeCanvas = document.createElement('canvas');
    this.edgeCanvas.setAttribute('aria-hidden', 'true');
    this.edgeCanvas.className = 'edge-layer';
    container.append(this.edgeCanvas);

    this.cy = cytoscape({
      container,
      elements: [],
      layout: { name: 'preset' },
      wheelSensitivity: 0.3,
      minZoom: 0.05,
      maxZoom: 3,
      textureOnViewport: true,
      pixelRatio: 1,
      motionBlur: false,
      hideEdgesOnViewport: false,
      // Selection is the view's (a `chosen` class): Cytoscape's own tap-selection would select the namespace
      // under a tapped edge.
      autounselectify: true,
      style: [
        {
          selector: 'node',
          style: {
            label: 'data(label)',
            'font-size': 11,
            'text-valign': 'bottom',
            'text-margin-y': 4,
            'background-color': '#fff',
            shape: 'round-rectangle',
            'border-width': 2,
            'border-color': '#333',
            width: 34,
            height: 34,
            'min-zoomed-font-size': 6,
          } as any,
        },
        ...(Object.keys(NODE_COLORS).map((k) => ({
          selector: `node[kind = "${k}"]`,
          style: { 'background-color': NODE_COLORS[k], shape: NODE_SHAPES[k] } as any,
        })) as any[]),
        {
          selector: 'node[kind = "namespace"]',
          style: {
            'text-valign': 'top',
            'text-halign': 'center',
            'font-size': 14,
            'font-weight': 'bold',
            // The box itself is drawn on the edge layer, beneath the edges; this node carries the label and taps.
            'background-opacity': 0,
            'border-width': 0,
            shape: 'round-rectangle',
            width: 'data(w)',
            height: 'data(h)',
            'z-index': 0,
            'z-index-compare': 'manual',
          } as any,
        },
        { selector: 'node[kind != "namespace"]', style: { 'z-index': 10, 'z-index-compare': 'manual' } as any },
        // A collapsed namespace stands for its workloads: a node at its box's centre that their edges join.
        {
          selector: 'node[kind = "namespace"].collapsed',
          style: {
            width: COLLAPSED_SIZE,
            height: COLLAPSED_SIZE,
            'background-color': '#dfe6ee',
            'background-opacity': 1,
            'border-width': 2,
            'border-style': 'double',
            'border-color': '#4a5561',
            'text-valign': 'bottom',
            'z-index': 10,
          } as any,
        },
        { selector: '.chosen', style: { 'overlay-color': '#000', 'overlay-opacity': 0.15, 'border-width': 4 } as any },
        { selector: 'node[kind = "namespace"].chosen', style: { 'border-width': 0 } as any },
        { selector: '.hidden', style: { display: 'none' } },
      ],
    });
    // Double-tapping a namespace collapses it into one node or expands it into its workloads.
    this.cy.on('dbltap', 'node[kind = "namespace"]', (ev) => this.toggleCollapsed(ev.target.id()));
    // A workload wins a tap; on a namespace's box or the background, the nearest edge within a few pixels.
    this.cy.on('tap', (ev) => {
      const target = ev.target;
      const isNamespace = target !== this.cy && target.isNode?.() && target.data('kind') === 'namespace' && !target.hasClass('collapsed');
      if (target !== this.cy && !isNamespace) {
        const n = this.nodes.get(target.id());
        if (n) this.select({ node: n });
        return;
      }
      const e = this.edgeAt(ev.position);
      if (e) this.select({ edge: e });
      else if (isNamespace) {
        const n = this.nodes.get(target.id());
        if (n) this.select({ node: n });
      }
    });
    this.cy.on('viewport resize', () => this.scheduleDraw());
    this.cy.on('position', 'node', (ev) => {
      const n = ev.target;
      if (n.data('kind') === 'namespace') return;
      this.positions.set(n.id(), { ...n.position() });
      this.shapesDirty = true;
      this.scheduleDraw();
    });
  }

  private shapesDirty = true;

  /** The visible edge drawn nearest to a model position, within TAP_TOLERANCE screen pixels. */
  edgeAt(p: Point): GraphEdge | undefined {
    this.updateShapes();
    return hitEdge(this.shapes, p.x, p.y, TAP_TOLERANCE / this.cy.zoom());
  }

  private collapsed = new Set<string>();

  isCollapsed(namespaceId: string): boolean {
    return this.collapsed.has(namespaceId);
  }

  /** Collapses a namespace into one node (its workloads' edges join it) or expands it; nothing moves. */
  setCollapsed(namespaceIds: Iterable<string>, collapsed: boolean) {
    for (const id of namespaceIds) {
      if (collapsed) this.collapsed.add(id);
      else this.collapsed.delete(id);
    }
    this.refreshDrawn();
  }

  toggleCollapsed(namespaceId: string) {
    this.setCollapsed([namespaceId], !this.collapsed.has(namespaceId));
  }

  namespaceIds(): string[] {
    return (this.graph?.nodes ?? []).filter((n) => n.kind === 'namespace').map((n) => n.id);
  }

  /** How an edge is drawn (tests and benchmarks read it): verdict styling, and its midpoint on screen. */
  edgeInfo(id: string): { visible: boolean; color: string; line: string; arrow: string; mid: Point } | undefined {
    this.updateShapes();
    const s = this.shapes.find((x) => x.edge.id === id);
    if (!s) return undefined;
    const st = EDGE_STYLE[s.edge.verdict];
    const m = edgePoint(s, 0.5);
    const z = this.cy.zoom();
    const pan = this.cy.pan();
    return { visible: this.drawn.edges.some((e) => e.id === id), color: st.color, line: st.line, arrow: st.arrow, mid: { x: m.x * z + pan.x, y: m.y * z + pan.y } };
  }

  /** How many edges the last frame drew. */
  edgesDrawn = 0;

  private updateShapes() {
    if (!this.shapesDirty || !this.graph) return;
    const boxes = this.boxes;
    const collapsed = this.collapsed;
    this.shapes = edgeShapes(
      this.drawn.edges,
      (id) => this.positions.get(id) ?? boxes.get(id),
      (id) => (collapsed.has(id) ? COLLAPSED_SIZE / 2 + 2 : NODE_HALF),
    );
    this.shapesDirty = false;
  }

  private drawPending = false;

  private scheduleDraw() {
    if (this.drawPending || this.destroyed) return;
    this.drawPending = true;
    requestAnimationFrame(() => {
      this.drawPending = false;
      if (!this.destroyed) this.drawEdges();
    });
  }

  /** Namespace boxes, then every visible edge: one path and one stroke per verdict and width, then the arrowheads
   * of a verdict in one path (triangle: allowed; tee: denied; diamond: would-deny), then the selected edge. */
  private drawEdges() {
    this.updateShapes();
    const c = this.edgeCanvas;
    const w = Math.max(1, Math.round(this.cy.width()));
    const h = Math.max(1, Math.round(this.cy.height()));
    if (c.width !== w || c.height !== h) {
      c.width = w;
      c.height = h;
      c.style.width = `${w}px`;
      c.style.height = `${h}px`;
    }
    const ctx = c.getContext('2d');
    if (!ctx) return;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, w, h);
    const z = this.cy.zoom();
    const pan = this.cy.pan();
    ctx.setTransform(z, 0, 0, z, pan.x, pan.y);
    // What is on screen, in model units (with a margin for line widths and arrowheads).
    const m = 40;
    const [vx0, vy0, vx1, vy1] = [-pan.x / z - m, -pan.y / z - m, (w - pan.x) / z + m, (h - pan.y) / z + m];

    ctx.lineWidth = 2;
    ctx.setLineDash(dashPattern('dashed', z));
    for (const [id, b] of this.boxes) {
      if (!this.drawn.nodes.has(id)) continue;
      const x = b.x - b.w / 2;
      const y = b.y - b.h / 2;
      ctx.beginPath();
      ctx.roundRect(x, y, b.w, b.h, 8);
      ctx.fillStyle = 'rgba(244, 246, 248, 0.6)';
      ctx.fill();
      ctx.strokeStyle = '#6b7785';
      ctx.stroke();
    }

    // Visible, on-screen edges grouped by verdict and width (to half a unit).
    const groups = new Map<string, EdgeShape[]>();
    let drawn = 0;
    for (const s of this.shapes) {
      if (Math.max(s.x1, s.cx, s.x2) < vx0 || Math.min(s.x1, s.cx, s.x2) > vx1) continue;
      if (Math.max(s.y1, s.cy, s.y2) < vy0 || Math.min(s.y1, s.cy, s.y2) > vy1) continue;
      const k = `${s.edge.verdict}|${Math.round(s.width * 2) / 2}`;
      const l = groups.get(k);
      if (l) l.push(s);
      else groups.set(k, [s]);
      drawn++;
    }
    this.edgesDrawn = drawn;
    ctx.lineCap = 'butt';
    for (const [k, list] of groups) {
      const [verdict, width] = k.split('|');
      const st = EDGE_STYLE[verdict as Verdict];
      ctx.strokeStyle = st.color;
      ctx.lineWidth = Number(width);
      ctx.setLineDash(dashPattern(st.line, z));
      ctx.beginPath();
      for (const s of list) {
        ctx.moveTo(s.x1, s.y1);
        ctx.quadraticCurveTo(s.cx, s.cy, s.x2, s.y2);
      }
      ctx.stroke();
    }
    ctx.setLineDash([]);
    const byVerdict = new Map<Verdict, EdgeShape[]>();
    for (const list of groups.values()) {
      const v = list[0].edge.verdict;
      byVerdict.set(v, [...(byVerdict.get(v) ?? []), ...list]);
    }
    for (const [v, list] of byVerdict) this.drawArrows(ctx, v, list, z);

    const sel = this.selectedId ? this.shapes.find((s) => s.edge.id === this.selectedId) : undefined;
    if (sel) {
      const st = EDGE_STYLE[sel.edge.verdict];
      ctx.beginPath();
      ctx.moveTo(sel.x1, sel.y1);
      ctx.quadraticCurveTo(sel.cx, sel.cy, sel.x2, sel.y2);
      ctx.strokeStyle = 'rgba(0, 0, 0, 0.25)';
      ctx.lineWidth = sel.width + 8 / z;
      ctx.stroke();
      ctx.strokeStyle = st.color;
      ctx.lineWidth = sel.width + 1.5 / z;
      ctx.setLineDash(dashPattern(st.line, z));
      ctx.stroke();
      ctx.setLineDash([]);
      this.drawArrows(ctx, sel.edge.verdict, [sel], z, true);
    }
  }

  /** Arrowheads of one verdict in one path. Those under MIN_ARROW_PX on screen are left out (a blur of a pixel
   * or two shows no shape; the line's dash pattern still tells the verdict), unless `all`. */
  private drawArrows(ctx: CanvasRenderingContext2D, v: Verdict, list: EdgeShape[], zoom: number, all = false) {
    const st = EDGE_STYLE[v];
    ctx.fillStyle = st.color;
    ctx.strokeStyle = st.color;
    ctx.beginPath();
    for (const s of list) {
      if (!all && (9 + s.width * 1.5) * zoom < MIN_ARROW_PX) continue;
      // Direction at the target: from the control point to the end.
      let dx = s.x2 - s.cx;
      let dy = s.y2 - s.cy;
      const l = Math.sqrt(dx * dx + dy * dy) || 1;
      dx /= l;
      dy /= l;
      const size = 9 + s.width * 1.5;
      const [px, py] = [-dy, dx];
      const { x2: x, y2: y } = s;
      if (v === 'allowed') {
        ctx.moveTo(x, y);
        ctx.lineTo(x - dx * size + px * size * 0.45, y - dy * size + py * size * 0.45);
        ctx.lineTo(x - dx * size - px * size * 0.45, y - dy * size - py * size * 0.45);
        ctx.closePath();
      } else if (v === 'denied') {
        // A bar across the line at its end.
        const t = Math.max(2, s.width);
        const hw = size * 0.55;
        ctx.moveTo(x + px * hw, y + py * hw);
        ctx.lineTo(x + px * hw - dx * t, y + py * hw - dy * t);
        ctx.lineTo(x - px * hw - dx * t, y - py * hw - dy * t);
        ctx.lineTo(x - px * hw, y - py * hw);
        ctx.closePath();
      } else {
        const half = size / 2;
        ctx.moveTo(x, y);
        ctx.lineTo(x - dx * half + px * half * 0.6, y - dy * half + py * half * 0.6);
        ctx.lineTo(x - dx * size, y - dy * size);
        ctx.lineTo(x - dx * half - px * half * 0.6, y - dy * half - py * half * 0.6);
        ctx.closePath();
      }
    }
    ctx.fill();
  }

  private selectedId: string | undefined;

  /** Zoom and pan to the layout's positions (known here: no bounding-box pass over every element). */
  private fitToLayout() {
    let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
    for (const n of this.nodes.values()) {
      const p = this.positions.get(n.id);
      if (!p) continue;
      [x0, y0, x1, y1] = [Math.min(x0, p.x), Math.min(y0, p.y), Math.max(x1, p.x), Math.max(y1, p.y)];
    }
    if (!Number.isFinite(x0)) return;
    const pad = 80;
    const w = this.cy.width() || 800;
    const h = this.cy.height() || 600;
    const zoom = Math.min(2, Math.max(0.05, Math.min(w / (x1 - x0 + 2 * pad), h / (y1 - y0 + 2 * pad))));
    this.cy.viewport({ zoom, pan: { x: w / 2 - ((x0 + x1) / 2) * zoom, y: h / 2 - ((y0 + y1) / 2) * zoom } });
  }

  select(s: Selection) {
    this.cy.$('.chosen').removeClass('chosen');
    const id = s.node?.id ?? s.edge?.id;
    this.selectedId = id;
    if (s.node) this.cy.getElementById(s.node.id).addClass('chosen');
    this.scheduleDraw();
    for (const b of this.container.ownerDocument.querySelectorAll('[data-graph-id]'))
      b.setAttribute('aria-pressed', String(b.getAttribute('data-graph-id') === id));
    this.onSelect(s);
  }

  nodeById(id: string) {
    return this.nodes.get(id);
  }

  get nodeMap() {
    return this.nodes;
  }

  /** Each namespace's box around its members' positions: centre and size. */
  private namespaceBoxes(g: Graph): Map<string, { x: number; y: number; w: number; h: number }> {
    const ext = new Map<string, [number, number, number, number]>();
    for (const n of g.nodes) {
      if (!n.parent) continue;
      const p = this.positions.get(n.id);
      if (!p) continue;
      const b = ext.get(n.parent);
      ext.set(n.parent, b ? [Math.min(b[0], p.x), Math.min(b[1], p.y), Math.max(b[2], p.x), Math.max(b[3], p.y)] : [p.x, p.y, p.x, p.y]);
    }
    const out = new Map<string, { x: number; y: number; w: number; h: number }>();
    const pad = 40; // half a node, its label, and a margin
    for (const [id, [x0, y0, x1, y1]] of ext) out.set(id, { x: (x0 + x1) / 2, y: (y0 + y1) / 2 + 6, w: x1 - x0 + 2 * pad, h: y1 - y0 + 2 * pad + 12 });
    return out;
  }

  /** Applies a new graph: adds, updates and removes elements in place; new nodes get the next free slots. */
  update(g: Graph, filter: GraphFilter) {
    const d = diffGraph(this.graph, g);
    this.graph = g;
    this.nodes = new Map(g.nodes.map((n) => [n.id, n]));
    const placed = this.layout.place(g.nodes);
    for (const [id, p] of placed) this.positions.set(id, { ...p });
    for (const id of d.removeNodes) this.positions.delete(id);
    const boxes = this.namespaceBoxes(g);
    this.boxes = boxes;
    if (d.addNodes.length || d.removeNodes.length || d.addEdges.length || d.removeEdges.length || d.updateEdges.length) this.shapesDirty = true;
    const first = this.cy.elements().length === 0;
    this.cy.batch(() => {
      for (const id of d.removeNodes) this.cy.getElementById(id).remove();
      const add: cytoscape.ElementDefinition[] = [];
      for (const n of d.addNodes) {
        if (n.kind === 'namespace') {
          const b = boxes.get(n.id) ?? { x: 0, y: 0, w: 60, h: 60 };
          add.push({ group: 'nodes', data: { id: n.id, label: n.label, kind: n.kind, w: b.w, h: b.h }, position: { x: b.x, y: b.y }, grabbable: false });
          continue;
        }
        const pos = this.positions.get(n.id);
        add.push({ group: 'nodes', data: { id: n.id, label: n.label, kind: n.kind }, position: pos ? { ...pos } : undefined });
      }
      if (add.length) this.cy.add(add);
      // A namespace that gained or lost members: its box follows (members never move).
      if (!first && (d.addNodes.length || d.removeNodes.length)) {
        for (const [id, b] of boxes) {
          const e = this.cy.getElementById(id);
          if (!e.nonempty() || (e.data('w') === b.w && e.data('h') === b.h)) continue;
          e.data({ w: b.w, h: b.h });
          e.position({ x: b.x, y: b.y });
        }
      }
    });
    // Before the lists change the DOM: reading the container's size then would force a layout of it all.
    if (first) this.fitToLayout();
    // A refresh that changed nothing redraws nothing (the lists are not rebuilt under the reader's pointer).
    const changed = Object.values(d).some((l) => l.length > 0);
    if (first || changed || filter !== this.filter) this.applyFilter(filter);
  }

  private filter: GraphFilter = emptyFilter();

  applyFilter(f: GraphFilter) {
    this.filter = f;
    this.refreshDrawn();
  }

  /** What is drawn follows the filter and the collapsed namespaces. */
  private refreshDrawn() {
    if (!this.graph) return;
    const keep = applyFilter(this.graph, this.filter);
    const drawn = collapseGraph(this.graph, this.collapsed, keep);
    this.cy.batch(() => {
      // Only elements whose visibility changes are touched (a class change restyles the element).
      this.cy.nodes().forEach((n) => {
        const hide = !drawn.nodes.has(n.id());
        if (hide !== n.hasClass('hidden')) n.toggleClass('hidden', hide);
        const c = this.collapsed.has(n.id());
        if (c !== n.hasClass('collapsed')) n.toggleClass('collapsed', c);
      });
    });
    this.drawn = drawn;
    this.shapesDirty = true;
    this.scheduleDraw();
    this.scheduleA11y();
  }

  private a11yPending = false;

  /** The lists are rebuilt after the canvas has painted (once per burst of changes): building thousands of
   * buttons must not delay the graph's first frame. */
  private scheduleA11y() {
    if (this.a11yPending) return;
    this.a11yPending = true;
    requestAnimationFrame(() =>
      setTimeout(() => {
        this.a11yPending = false;
        if (!this.destroyed) this.renderA11y();
      }, 0),
    );
  }

  private destroyed = false;

  private drawn: { nodes: Set<string>; edges: GraphEdge[] } = { nodes: new Set(), edges: [] };

  private renderA11y() {
    if (!this.graph) return;
    const mk = (id: string, name: string, onClick: () => void, extra = '') => {
      const li = document.createElement('li');
      const b = document.createElement('button');
      b.type = 'button';
      b.className = `graph-item ${extra}`;
      b.dataset.graphId = id;
      b.setAttribute('aria-label', name);
      b.setAttribute('aria-pressed', String(id === this.selectedId));
      b.textContent = name;
      b.addEventListener('click', onClick);
      li.append(b);
      return li;
    };
    // A namespace: its name (selects it) and a toggle that collapses or expands it.
    const nsItems = this.graph.nodes
      .filter((n) => n.kind === 'namespace' && this.drawn.nodes.has(n.id))
      .map((n) => {
        const li = mk(n.id, nodeName(n), () => this.select({ node: n }));
        const t = document.createElement('button');
        t.type = 'button';
        t.className = 'graph-toggle';
        const c = this.collapsed.has(n.id);
        t.textContent = c ? 'expand' : 'collapse';
        t.setAttribute('aria-label', `${c ? 'Expand' : 'Collapse'} ${nodeName(n)}`);
        t.setAttribute('aria-expanded', String(!c));
        t.addEventListener('click', () => this.toggleCollapsed(n.id));
        li.append(' ', t);
        return li;
      });
    const nodeItems = this.graph.nodes
      .filter((n) => n.kind !== 'namespace' && this.drawn.nodes.has(n.id))
      .map((n) => mk(n.id, nodeName(n), () => this.select({ node: n })));
    const edgeItems = this.drawn.edges.map((e) => mk(e.id, edgeName(e, this.nodes), () => this.select({ edge: e }), `verdict-${e.verdict}`));
    this.a11yNamespaces.replaceChildren(...nsItems);
    this.a11yNodes.replaceChildren(...chunked(nodeItems));
    this.a11yEdges.replaceChildren(...chunked(edgeItems));
  }

  destroy() {
    this.destroyed = true;
    this.cy.destroy();
  }
}
