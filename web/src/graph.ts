// The service graph: Cytoscape.js renders; positions come from StableLayout (no re-layout on updates). A
// parallel, keyboard-reachable list of buttons gives every node and edge an accessible name.
//
// Namespaces are drawn as plain nodes behind their workloads, sized and placed here from the layout's positions,
// not as Cytoscape compound parents: with compounds, every style or data change of a child walks its parents and
// descendants (profiled: most of the first draw's CPU time at 500 workloads / 5,000 edges).

import cytoscape from 'cytoscape';
import type { Graph, GraphEdge, GraphNode } from './api';
import { EDGE_STYLE, StableLayout, applyFilter, diffGraph, edgeName, nodeName, type GraphFilter } from './model';

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

/** Above this many edges the graph draws them straight (see the style). */
export const MANY_EDGES = 1000;

export class GraphView {
  cy: cytoscape.Core;
  private layout = new StableLayout();
  private graph: Graph | null = null;
  private nodes = new Map<string, GraphNode>();
  private edges = new Map<string, GraphEdge>();
  private a11yNodes: HTMLElement;
  private a11yEdges: HTMLElement;
  onSelect: (s: Selection) => void = () => {};

  constructor(
    private container: HTMLElement,
    a11y: HTMLElement,
  ) {
    a11y.innerHTML = '';
    const h1 = document.createElement('h3');
    h1.textContent = 'Workloads';
    this.a11yNodes = document.createElement('ul');
    this.a11yNodes.setAttribute('aria-label', 'Graph nodes');
    const h2 = document.createElement('h3');
    h2.textContent = 'Connections';
    this.a11yEdges = document.createElement('ul');
    this.a11yEdges.setAttribute('aria-label', 'Graph edges');
    a11y.append(h1, this.a11yNodes, h2, this.a11yEdges);

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
            'background-color': '#f4f6f8',
            'background-opacity': 0.6,
            'border-style': 'dashed',
            'border-color': '#6b7785',
            shape: 'round-rectangle',
            width: 'data(w)',
            height: 'data(h)',
            'z-index': 0,
            'z-index-compare': 'manual',
          } as any,
        },
        { selector: 'node[kind != "namespace"]', style: { 'z-index': 10, 'z-index-compare': 'manual' } as any },
        {
          selector: 'edge',
          style: {
            width: 'mapData(connections, 1, 1000, 1.5, 5)',
            'curve-style': 'bezier',
            'arrow-scale': 1.2,
            'z-index': 5,
            'z-index-compare': 'manual',
          } as any,
        },
        // Large graphs: straight edges (no bundling pass over parallel edges); opposite directions then share
        // a line, so the edge list stays the way to tell them apart.
        { selector: 'edge.many', style: { 'curve-style': 'straight' } as any },
        ...(Object.entries(EDGE_STYLE).map(([v, st]) => ({
          selector: `edge[verdict = "${v}"]`,
          style: { 'line-color': st.color, 'target-arrow-color': st.color, 'line-style': st.line, 'target-arrow-shape': st.arrow } as any,
        })) as any[]),
        { selector: ':selected', style: { 'overlay-color': '#000', 'overlay-opacity': 0.15, 'border-width': 4 } as any },
        { selector: '.hidden', style: { display: 'none' } },
      ],
    });
    this.cy.on('tap', 'node', (ev) => {
      const n = this.nodes.get(ev.target.id());
      if (n) this.select({ node: n });
    });
    this.cy.on('tap', 'edge', (ev) => {
      const e = this.edges.get(ev.target.id());
      if (e) this.select({ edge: e });
    });
  }

  private selectedId: string | undefined;

  /** Zoom and pan to the layout's positions (known here: no bounding-box pass over every element). */
  private fitToLayout() {
    let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
    for (const n of this.nodes.values()) {
      const p = this.layout.position(n.id);
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
    this.cy.$(':selected').unselect();
    const id = s.node?.id ?? s.edge?.id;
    this.selectedId = id;
    if (id) this.cy.getElementById(id).select();
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
      const p = this.layout.position(n.id);
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
    this.edges = new Map(g.edges.map((e) => [e.id, e]));
    const placed = this.layout.place(g.nodes);
    const boxes = this.namespaceBoxes(g);
    const first = this.cy.elements().length === 0;
    this.cy.batch(() => {
      for (const id of [...d.removeEdges, ...d.removeNodes]) this.cy.getElementById(id).remove();
      const add: cytoscape.ElementDefinition[] = [];
      for (const n of d.addNodes) {
        if (n.kind === 'namespace') {
          const b = boxes.get(n.id) ?? { x: 0, y: 0, w: 60, h: 60 };
          add.push({ group: 'nodes', data: { id: n.id, label: n.label, kind: n.kind, w: b.w, h: b.h }, position: { x: b.x, y: b.y }, grabbable: false });
          continue;
        }
        const pos = placed.get(n.id) ?? this.layout.position(n.id);
        add.push({ group: 'nodes', data: { id: n.id, label: n.label, kind: n.kind }, position: pos ? { ...pos } : undefined });
      }
      for (const e of d.addEdges) {
        add.push({
          group: 'edges',
          data: { id: e.id, source: e.source, target: e.target, verdict: e.verdict, connections: e.connections },
          classes: g.edges.length > MANY_EDGES ? 'many' : '',
        });
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
      for (const e of d.updateEdges) this.cy.getElementById(e.id).data('connections', e.connections);
    });
    // Before the lists change the DOM: reading the container's size then would force a layout of it all.
    if (first) this.fitToLayout();
    this.applyFilter(filter);
  }

  applyFilter(f: GraphFilter) {
    if (!this.graph) return;
    const keep = applyFilter(this.graph, f);
    this.cy.batch(() => {
      // Only elements whose visibility changes are touched (a class change restyles the element).
      this.cy.nodes().forEach((n) => {
        const hide = !keep.nodes.has(n.id());
        if (hide !== n.hasClass('hidden')) n.toggleClass('hidden', hide);
      });
      this.cy.edges().forEach((e) => {
        const hide = !keep.edges.has(e.id());
        if (hide !== e.hasClass('hidden')) e.toggleClass('hidden', hide);
      });
    });
    this.visible = keep;
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

  private visible: { nodes: Set<string>; edges: Set<string> } = { nodes: new Set(), edges: new Set() };

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
    const nodeItems = this.graph.nodes
      .filter((n) => n.kind !== 'namespace' && this.visible.nodes.has(n.id))
      .map((n) => mk(n.id, nodeName(n), () => this.select({ node: n })));
    const edgeItems = this.graph.edges
      .filter((e) => this.visible.edges.has(e.id))
      .map((e) => mk(e.id, edgeName(e, this.nodes), () => this.select({ edge: e }), `verdict-${e.verdict}`));
    this.a11yNodes.replaceChildren(...nodeItems);
    this.a11yEdges.replaceChildren(...edgeItems);
  }

  destroy() {
    this.destroyed = true;
    this.cy.destroy();
  }
}
