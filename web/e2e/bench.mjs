// Browser benchmark of the console (Debian's chromium via playwright-core), against a synthetic API that
// speaks the console's routes: the built app (web/dist) is served as the agent serves it.
//
//   node e2e/bench.mjs            → prints a Markdown table (docs/benchmarks.md records it)
//
// 1. Service graph: 500 workloads in 20 namespaces, 5,000 edges. Time from the graph answer to the painted
//    frame (the app's own measurement) and from navigation start, median of 5 page loads.
// 2. Flows view: the follow stream delivers 1,000 flows/s (100 every 100 ms) for 10 s. Measured in the page:
//    records received and drawn, the longest gap between animation frames, long tasks (> 50 ms).

import { createServer } from 'node:http';
import { readFileSync, existsSync } from 'node:fs';
import { dirname, join, resolve, extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
// BENCH_DIST=dir: another build of the console (to compare two versions back to back).
const dist = resolve(process.env.BENCH_DIST ?? resolve(here, '../dist'));
if (!existsSync(join(dist, 'index.html'))) throw new Error('build the console first: npm run build');

const WORKLOADS = 500;
const NAMESPACES = 20;
const EDGES = 5000;
const FLOW_RATE = 1000;
const FLOW_SECONDS = 10;
// BENCH_RUNS=n: page loads of the graph (median of n; 5 unless told).
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
// BENCH_GRAPH_ONLY=1: skip the flows measurement; BENCH_FLOWS_ONLY=1: skip the graph's.
const GRAPH_ONLY = !!process.env.BENCH_GRAPH_ONLY;
const FLOWS_ONLY = !!process.env.BENCH_FLOWS_ONLY;

function synthGraph() {
  const nodes = [];
  const ws = [];
  for (let n = 0; n < NAMESPACES; n++) nodes.push({ id: `ns:ns${n}`, kind: 'namespace', label: `ns${n}`, namespace: `ns${n}` });
  for (let i = 0; i < WORKLOADS; i++) {
    const ns = `ns${i % NAMESPACES}`;
    const id = `wl:${ns}/w${i}`;
    ws.push(id);
    nodes.push({ id, kind: 'workload', label: `w${i}`, namespace: ns, parent: `ns:${ns}`, labels: { app: `w${i}` }, pods: [`w${i}-0`] });
  }
  nodes.push({ id: 'internet', kind: 'internet', label: 'public internet' }, { id: 'private', kind: 'private', label: 'private network' });
  // Deterministic pseudo-random pairs (an LCG), each pair once.
  let x = 12345;
  const rnd = (m) => ((x = (x * 1103515245 + 12345) % 2147483648), x % m);
  const seen = new Set();
  const edges = [];
  const verdicts = ['allowed', 'allowed', 'allowed', 'denied', 'would-deny'];
  while (edges.length < EDGES) {
    const s = ws[rnd(ws.length)];
    const t = ws[rnd(ws.length)];
    const v = verdicts[rnd(verdicts.length)];
    const id = `${s}->${t}:${v}`;
    if (s === t || seen.has(id)) continue;
    seen.add(id);
    edges.push({ id, source: s, target: t, verdict: v, connections: 1 + rnd(100), packets: 10, bytes: 1000, records: 1, lastSeen: new Date().toISOString(), ports: ['tcp/9000'] });
  }
  return { nodes, edges, window: '15m', generated: new Date().toISOString() };
}

const graph = JSON.stringify(synthGraph());

function record(i) {
  const now = new Date().toISOString();
  return JSON.stringify({
    start_time: now, end_time: now, node: 'n0', verdict: i % 5 === 0 ? 'denied' : 'allowed', direction: 'ingress', reporter: 'dst', ip_family: 'v4', protocol: 'tcp',
    src: { kind: 'pod', namespace: `ns${i % 20}`, pod: `w${i % 500}-0`, labels: { app: `w${i % 500}` }, ip: '10.0.0.1', port: 40000 + (i % 20000) },
    dst: { kind: 'pod', namespace: 'ns1', pod: 'w1-0', labels: { app: 'w1' }, ip: '10.0.0.2', port: 9000 },
    enforced_trace: ['default|ns1/allow|0|allow'], packets_src_to_dst: 3, bytes_src_to_dst: 180, packets_dst_to_src: 2, bytes_dst_to_src: 120,
    flows_started: 1, flows_completed: 1, flows_open: 0, open: false, aggregation: 'five_tuple',
  });
}

let flowsSent = 0;
const server = createServer((req, res) => {
  const u = new URL(req.url, 'http://x');
  if (u.pathname === '/porin/v1/console/session') {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    return res.end(JSON.stringify({ user: 'token:bench', role: 'admin', namespaces: null, tiers: null, canWrite: true, csrf: 'x' }));
  }
  if (u.pathname === '/porin/v1/console/graph') {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    return res.end(graph);
  }
  if (u.pathname === '/porin/v1/console/flows') {
    res.writeHead(200, { 'Content-Type': 'application/x-ndjson' });
    if (u.searchParams.get('follow') !== 'true') return res.end();
    const perTick = FLOW_RATE / 10;
    let ticks = 0;
    const t = setInterval(() => {
      let chunk = '';
      for (let i = 0; i < perTick; i++) chunk += record(flowsSent++) + '\n';
      res.write(chunk);
      if (++ticks >= FLOW_SECONDS * 10) {
        clearInterval(t);
        res.end();
      }
    }, 100);
    req.on('close', () => clearInterval(t));
    return;
  }
  let p = u.pathname.replace(/^\/ui\/?/, '') || 'index.html';
  let f = join(dist, p);
  if (!f.startsWith(dist) || !existsSync(f)) f = join(dist, 'index.html');
  const types = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css' };
  res.writeHead(200, { 'Content-Type': types[extname(f)] ?? 'application/octet-stream' });
  res.end(readFileSync(f));
});

/** Self time per event name on each thread of the renderer that did work, printed to stderr. */
function summariseTrace(t) {
  const events = t.traceEvents ?? t;
  const names = new Map();
  for (const e of events) if (e.ph === 'M' && e.name === 'thread_name') names.set(`${e.pid}:${e.tid}`, e.args.name);
  const byThread = new Map();
  for (const e of events) {
    if (e.ph !== 'X' || typeof e.dur !== 'number') continue;
    const k = `${e.pid}:${e.tid}`;
    if (!byThread.has(k)) byThread.set(k, []);
    byThread.get(k).push(e);
  }
  for (const [k, evs] of byThread) {
    evs.sort((a, b) => a.ts - b.ts || b.dur - a.dur);
    const self = new Map();
    const stack = [];
    let total = 0;
    for (const e of evs) {
      while (stack.length && stack[stack.length - 1].ts + stack[stack.length - 1].dur <= e.ts) stack.pop();
      const top = stack[stack.length - 1];
      if (top) self.set(top.name, (self.get(top.name) ?? 0) - e.dur);
      else total += e.dur;
      self.set(e.name, (self.get(e.name) ?? 0) + e.dur);
      stack.push(e);
    }
    if (total < 20000) continue;
    console.error(`trace: thread ${names.get(k) ?? k}, ${(total / 1000).toFixed(0)} ms in top-level events; self time:`);
    for (const [n, us] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 12)) console.error(`${(us / 1000).toFixed(0).padStart(7)} ms  ${n}`);
  }
}

const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];

async function main() {
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${server.address().port}/ui/`;
  if (process.env.BENCH_SERVE_ONLY) {
    // Serve the synthetic API for manual profiling.
    console.log(base);
    return;
  }
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const results = [];
  try {
    const ctx = await browser.newContext({ viewport: { width: 1600, height: 1000 } });
    const page = await ctx.newPage();
    page.on('pageerror', (e) => console.error(`page error: ${e.message}`));
    page.on('console', (m) => m.type() === 'error' && console.error(`console: ${m.text()}`));
    const render = [];
    const total = [];
    const cpu = [];
    const cdp = await ctx.newCDPSession(page);
    await cdp.send('Performance.enable', { timeDomain: 'threadTicks' });
    const threadTime = async () => (await cdp.send('Performance.getMetrics')).metrics.find((m) => m.name === 'ThreadTime')?.value ?? NaN;
    for (let run = 0; run < (FLOWS_ONLY ? 0 : RUNS); run++) {
      await page.goto(`${base}#/flows`);
      await page.waitForTimeout(300);
      await page.evaluate(() => (window.__porin.graphRenderMs = []));
      const c0 = await threadTime();
      // BENCH_PROFILE=1: a CPU profile (V8 sampling, through the DevTools protocol) of the first switch to the
      // graph view, summarised by self time per function.
      const profile = process.env.BENCH_PROFILE && run === 0;
      if (profile) {
        await cdp.send('Profiler.enable');
        await cdp.send('Profiler.setSamplingInterval', { interval: 200 });
        await cdp.send('Profiler.start');
      }
      // BENCH_TRACE=1: a Chromium trace of the first switch, the renderer main thread's time by event (self
      // time): script, style, layout, paint, canvas rasterisation and GC, which the CPU profile lumps together.
      const trace = process.env.BENCH_TRACE && run === 0;
      if (trace) await browser.startTracing(page, { categories: ['devtools.timeline', 'disabled-by-default-devtools.timeline', 'v8', 'blink', 'cc', 'gpu', 'skia'] });
      await page.goto(`${base}#/graph`);
      await page.waitForFunction(() => window.__porin && window.__porin.graphRenderMs.length > 0, null, { timeout: 60000 });
      if (trace) summariseTrace(JSON.parse((await browser.stopTracing()).toString()));
      if (profile) {
        const { profile: p } = await cdp.send('Profiler.stop');
        const self = new Map();
        const dt = new Map();
        for (let i = 0; i < p.samples.length; i++) dt.set(p.samples[i], (dt.get(p.samples[i]) ?? 0) + (p.timeDeltas[i] ?? 0));
        for (const n of p.nodes) {
          const k = `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.split('/').pop()}:${n.callFrame.lineNumber}`;
          self.set(k, (self.get(k) ?? 0) + (dt.get(n.id) ?? 0));
        }
        const top = [...self].sort((a, b) => b[1] - a[1]).slice(0, 25);
        console.error('CPU profile of the switch to the graph view, self time:');
        for (const [k, us] of top) console.error(`${(us / 1000).toFixed(0).padStart(7)} ms  ${k}`);
        // Who calls the heaviest function: self time by caller chain (4 frames up).
        const byId = new Map(p.nodes.map((n) => [n.id, n]));
        const parent = new Map();
        for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
        const name = (n) => `${n.callFrame.functionName || '(anonymous)'}:${n.callFrame.lineNumber}`;
        // BENCH_CALLERS=text: the callers of the heaviest function whose name or line contains it instead.
        const want = process.env.BENCH_CALLERS;
        const heavy = top.find(([k]) => (want ? k.includes(want) : !k.startsWith('(')))?.[0];
        const chains = new Map();
        for (const n of p.nodes) {
          const k = `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.split('/').pop()}:${n.callFrame.lineNumber}`;
          if (k !== heavy) continue;
          const chain = [];
          for (let id = parent.get(n.id), i = 0; id !== undefined && i < 6; id = parent.get(id), i++) chain.push(name(byId.get(id)));
          chains.set(chain.join(' < '), (chains.get(chain.join(' < ')) ?? 0) + (dt.get(n.id) ?? 0));
        }
        console.error(`callers of ${heavy}:`);
        for (const [c, us] of [...chains].sort((a, b) => b[1] - a[1]).slice(0, 8)) console.error(`${(us / 1000).toFixed(0).padStart(7)} ms  < ${c}`);
      }
      const r = await page.evaluate(() => ({ render: window.__porin.graphRenderMs[0], total: performance.now(), n: window.__porin.cy.nodes().length, e: window.__porin.graph ? window.__porin.graph.edgesDrawn : window.__porin.cy.edges().length, phases: window.__porin.graphPhases, zoom: window.__porin.cy.zoom() }));
      console.error(`run ${run}: update (elements, styles) ${r.phases?.update?.toFixed(0)} ms, to the painted frame ${r.phases?.paint?.toFixed(0)} ms (wall), zoom ${r.zoom.toFixed(3)}`);
      if (process.env.BENCH_SCREENSHOT && run === 0) await page.screenshot({ path: process.env.BENCH_SCREENSHOT });
      if (r.n !== WORKLOADS + NAMESPACES + 2 || r.e !== EDGES) throw new Error(`rendered ${r.n} nodes, ${r.e} edges`);
      cpu.push((await threadTime()) - c0);
      console.error(`run ${run}: main-thread CPU of the switch ${(cpu[cpu.length - 1] * 1000).toFixed(0)} ms`);
      render.push(r.render);
      total.push(r.total);
    }
    let moved = { moved: 0, update: 0 };
    if (!FLOWS_ONLY) {
      // A live update of the same graph (no change) must be cheap, and positions must not move.
      moved = await page.evaluate(async () => {
        const before = window.__porin.cy.nodes().map((n) => JSON.stringify(n.position()));
        const k = window.__porin.graphUpdates;
        await new Promise((r) => {
          const t = setInterval(() => window.__porin.graphUpdates > k && (clearInterval(t), r()), 100);
        });
        const after = window.__porin.cy.nodes().map((n) => JSON.stringify(n.position()));
        return { moved: before.filter((p, i) => p !== after[i]).length, update: window.__porin.graphRenderMs[window.__porin.graphRenderMs.length - 1] };
      });
      results.push(['Graph: 500 workloads, 5,000 edges — graph answer parsed to painted frame, wall clock (median of 5)', `${median(render).toFixed(0)} ms`, '≤ 1,000 ms']);
      results.push(['Graph: main-thread CPU time from switching to the graph view to the painted frame (median of 5)', `${(median(cpu) * 1000).toFixed(0)} ms`, '≤ 1,000 ms']);
      results.push(['Graph: live refresh of the same graph (positions moved)', `${moved.update.toFixed(0)} ms (${moved.moved} moved)`, '0 moved']);
    }

    if (GRAPH_ONLY) {
      console.log('| Measurement | Result | Target |\n|---|---|---|');
      for (const r of results) console.log(`| ${r.join(' | ')} |`);
      return;
    }
    // Flows at 1,000/s.
    flowsSent = 0;
    await page.goto(`${base}#/flows`);
    await page.evaluate(() => {
      window.__bench = { gaps: [], longTasks: 0, longest: 0 };
      let last = performance.now();
      const tick = (t) => {
        window.__bench.gaps.push(t - last);
        last = t;
        window.__bench.raf = requestAnimationFrame(tick);
      };
      requestAnimationFrame(tick);
      new PerformanceObserver((l) => {
        for (const e of l.getEntries()) {
          window.__bench.longTasks++;
          window.__bench.longest = Math.max(window.__bench.longest, e.duration);
        }
      }).observe({ type: 'longtask', buffered: false });
    });
    await page.waitForFunction((n) => window.__porin.table && window.__porin.table.received >= n, FLOW_RATE * FLOW_SECONDS, { timeout: (FLOW_SECONDS + 20) * 1000, polling: 200 });
    await page.waitForTimeout(300);
    const f = await page.evaluate(() => {
      const g = window.__bench.gaps.slice(5).sort((a, b) => a - b);
      return {
        received: window.__porin.table.received,
        drawn: window.__porin.table.drawn,
        rows: document.querySelectorAll('table.flows tbody tr').length,
        p50: g[Math.floor(g.length / 2)],
        p99: g[Math.floor(g.length * 0.99)],
        max: g[g.length - 1],
        longTasks: window.__bench.longTasks,
        longest: window.__bench.longest,
      };
    });
    results.push([`Flows: ${FLOW_RATE}/s for ${FLOW_SECONDS} s — received / drawn (table keeps the newest 500 rows)`, `${f.received} / ${f.drawn} (${f.rows} rows)`, `${FLOW_RATE * FLOW_SECONDS}`]);
    results.push(['Flows: gap between animation frames, median / p99 / max', `${f.p50.toFixed(0)} / ${f.p99.toFixed(0)} / ${f.max.toFixed(0)} ms`, 'no freeze (max < 250 ms)']);
    results.push(['Flows: long tasks (> 50 ms) during the 10 s, longest', `${f.longTasks}, ${f.longest.toFixed(0)} ms`, '']);
    const ok = (FLOWS_ONLY || median(render) <= 1000) && f.received === FLOW_RATE * FLOW_SECONDS && f.max < 250 && moved.moved === 0;
    console.log('| Measurement | Result | Target |\n|---|---|---|');
    for (const r of results) console.log(`| ${r.join(' | ')} |`);
    console.log(ok ? '\nbench: targets met' : '\nbench: a target was missed');
    process.exitCode = ok ? 0 : 1;
  } finally {
    await browser.close();
    server.close();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
