// End-to-end test of the web console in a real browser (Debian's chromium driven by playwright-core) against
// a real agent in a kernel lab with real flows: the shop example, probed with real TCP connections.
//
//   PORIN_BIN=target/debug/porin node e2e/console.e2e.mjs      (as root: the lab needs network namespaces)
//
// Screenshots go to web/test-artifacts/ (gitignored). Exit 0 when every check passes.

import { spawnSync } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '../..');
const bin = resolve(process.env.PORIN_BIN ?? join(repo, 'target/debug/porin'));
const artifacts = join(repo, 'web/test-artifacts');
mkdirSync(artifacts, { recursive: true });
const stateDir = mkdtempSync(join(tmpdir(), 'porin-console-e2e-'));
const lab = 'pconsole-e2e';

const SHOP_WORKLOADS = ['frontend', 'catalog', 'cart', 'checkout', 'payment', 'db'];

let failures = 0;
function check(cond, what) {
  if (cond) console.log(`ok   ${what}`);
  else {
    failures++;
    console.log(`FAIL ${what}`);
  }
}

function porin(args, { input, env } = {}) {
  const r = spawnSync(bin, ['lab', '--name', lab, '--state-dir', stateDir, ...args], { input, encoding: 'utf8', env: { ...process.env, ...env } });
  return r;
}
function porinCli(args, socket, input) {
  return spawnSync(bin, args, { input, encoding: 'utf8', env: { ...process.env, PORIN_SERVER: socket } });
}
function must(r, what) {
  if (r.status !== 0) throw new Error(`${what} failed (${r.status}): ${r.stderr}${r.stdout}`);
  return r;
}

// The app team opens frontend → payment by mistake; the platform tier's pci-isolation still denies it at
// payment's ingress — the denial the console must explain.
const OPEN_FRONTEND_TO_PAYMENT = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: frontend-to-payment, namespace: shop}
spec:
  podSelector: {matchLabels: {app: frontend}}
  policyTypes: [Egress]
  egress:
    - to: [{podSelector: {matchLabels: {app: payment}}}]
      ports: [{port: 9000}]
`;

const REC_SCOPE = `apiVersion: porin.io/v1
kind: RecommendationScope
metadata: {name: default}
spec:
  interval: 2s
  initialLookback: 1h
  stabilizationPeriod: 6s
  namespaceSpec: {recStatus: Enabled, selector: "projectcalico.org/name == 'ops'"}
`;

const LAUNCH_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

async function main() {
  porin(['down']);
  const up = must(porin(['up', '-f', join(repo, 'examples/shop')]), 'lab up');
  const m = /web console: (\S+)\s+\(sign in with the token (\S+),/.exec(up.stderr);
  if (!m) throw new Error(`lab up printed no console URL and token:\n${up.stderr}`);
  const [, url, token] = m;
  const socket = /export PORIN_SERVER=(\S+)/.exec(up.stdout)?.[1];
  check(url.startsWith('http://127.0.0.1:') && url.endsWith('/ui/'), `lab up prints the console URL (${url}) and a login token`);
  must(porinCli(['apply', '-f', '-'], socket, OPEN_FRONTEND_TO_PAYMENT), 'apply frontend-to-payment');
  must(porin(['wait']), 'lab wait');
  // Real connections between every pair of pods, twice (the graph is live: the second round arrives later).
  must(porin(['probe', '--port', '9000']), 'probe');
  const scoped = must(porinCli(['token', 'create', 'e2e-ops', '--role', 'scoped', '--namespace', 'ops', '--tier', 'default'], socket), 'scoped token').stdout.trim();
  const viewer = must(porinCli(['token', 'create', 'e2e-viewer', '--role', 'read-only'], socket), 'read-only token').stdout.trim();

  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: LAUNCH_ARGS, headless: true });
  const requested = [];
  try {
    // --- Unauthenticated: 401 and no data on every console data route.
    const anon = await browser.newContext();
    for (const path of ['graph?window=5m', 'flows?arg=--since&arg=1h', 'policies', 'session']) {
      const r = await anon.request.get(new URL(`/porin/v1/console/${path}`, url).href, { headers: { 'X-Porin-Console': '1' } });
      const body = await r.text();
      check(r.status() === 401 && !body.includes('shop') && !body.includes('frontend'), `unauthenticated GET ${path.split('?')[0]}: ${r.status()}, no data`);
    }
    await anon.close();

    // --- Admin: sign in, see the shop, click the red edge, read why.
    const ctx = await browser.newContext({ viewport: { width: 1600, height: 1000 } });
    const page = await ctx.newPage();
    page.on('request', (r) => requested.push(r.url()));
    await page.goto(url);
    await page.getByLabel('Porin token').fill(token);
    await page.screenshot({ path: join(artifacts, '01-login.png') });
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('navigation', { name: 'Graph items' }).waitFor();
    const cookies = await ctx.cookies();
    const sess = cookies.find((c) => c.name === 'porin_session');
    check(sess && sess.httpOnly && sess.sameSite === 'Strict' && sess.expires > Date.now() / 1000, 'session cookie: HttpOnly, SameSite=Strict, with an expiry');
    check(!(await page.evaluate(() => document.cookie)).includes('porin_session'), 'the page script cannot read the session cookie');

    for (const w of SHOP_WORKLOADS) {
      await page.getByRole('button', { name: `shop/${w}`, exact: true }).waitFor({ timeout: 15000 });
    }
    const inCanvas = await page.evaluate((ws) => ws.every((w) => window.__porin.cy.getElementById(`wl:shop/${w}`).visible()), SHOP_WORKLOADS);
    check(inCanvas, `the graph shows every shop workload (${SHOP_WORKLOADS.join(', ')})`);

    const edgeName = 'shop/frontend → shop/payment, denied';
    await page.getByRole('button', { name: edgeName }).waitFor({ timeout: 15000 });
    // Edges are drawn by the graph's edge layer (not Cytoscape elements): it says how it drew this one.
    const style = await page.evaluate(() => window.__porin.graph.edgeInfo('wl:shop/frontend->wl:shop/payment:denied'));
    check(
      style && style.visible && style.line === 'dashed' && style.arrow === 'tee' && style.color === '#D55E00',
      `the denied frontend → payment edge is visible (${style?.line}, ${style?.arrow} arrow, ${style?.color})`,
    );
    // And it is on the canvas: the edge layer's pixels at the edge's midpoint carry the denied colour nearby.
    const painted = await page.evaluate(({ x, y }) => {
      const c = document.querySelector('#cy canvas.edge-layer');
      const d = c.getContext('2d').getImageData(Math.round(x) - 4, Math.round(y) - 4, 9, 9).data;
      for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && Math.abs(d[i] - 213) < 40 && Math.abs(d[i + 1] - 94) < 40 && d[i + 2] < 60) return true;
      return false;
    }, style.mid);
    check(painted, 'the denied edge is painted in its colour at its midpoint');

    // A namespace collapses into one node (its workloads' edges join it) and expands back, nothing moved.
    const placedBefore = await page.evaluate(() => JSON.stringify(window.__porin.cy.getElementById('wl:shop/frontend').position()));
    await page.getByRole('button', { name: 'Collapse namespace shop', exact: true }).click();
    await page.getByRole('button', { name: 'Expand namespace shop', exact: true }).waitFor({ timeout: 15000 });
    const collapsed = await page.evaluate(() => ({
      node: window.__porin.cy.getElementById('ns:shop').hasClass('collapsed'),
      workload: window.__porin.cy.getElementById('wl:shop/frontend').visible(),
      inner: window.__porin.graph.edgeInfo('wl:shop/frontend->wl:shop/payment:denied')?.visible ?? false,
      items: document.querySelector('nav.graph-list').textContent,
    }));
    check(
      collapsed.node && !collapsed.workload && !collapsed.inner && !collapsed.items.includes('shop/frontend') && collapsed.items.includes('namespace shop'),
      'collapsing namespace shop hides its workloads and their inner edges; its edges join the namespace node',
    );
    await page.screenshot({ path: join(artifacts, '02b-graph-shop-collapsed.png') });
    await page.getByRole('button', { name: 'Expand namespace shop', exact: true }).click();
    await page.getByRole('button', { name: edgeName }).waitFor({ timeout: 15000 });
    const placedAfter = await page.evaluate(() => JSON.stringify(window.__porin.cy.getElementById('wl:shop/frontend').position()));
    check(placedAfter === placedBefore, `expanding it again shows the workloads where they were (${placedAfter})`);
    await page.screenshot({ path: join(artifacts, '02-graph.png') });

    // Click the red edge itself, on the canvas.
    const box = await page.locator('#cy').boundingBox();
    await page.mouse.click(box.x + style.mid.x, box.y + style.mid.y);
    const side = page.getByRole('complementary', { name: 'Selection' });
    await side.getByRole('heading', { name: /Flows shop\/frontend → shop\/payment/ }).waitFor();
    const rows = side.locator('tbody tr');
    await rows.first().waitFor({ timeout: 15000 });
    const verdicts = await rows.locator('td:nth-child(6)').allTextContents();
    check(verdicts.length > 0 && verdicts.every((v) => v === 'DENIED'), `clicking the edge lists its denied flows (${verdicts.length}: ${[...new Set(verdicts)]})`);
    // Every column heading of the side panel's table is readable: none overlaps its neighbour or is cut off.
    const heads = await side.locator('thead th').evaluateAll((ths) =>
      ths.map((th) => {
        const box = th.closest('.table-scroll').getBoundingClientRect();
        const r = th.getBoundingClientRect();
        const range = document.createRange();
        range.selectNodeContents(th);
        const t = range.getBoundingClientRect();
        return { text: th.textContent, left: r.left, right: r.right, textRight: t.right, textLeft: t.left, hidden: r.right > box.right + 0.5 };
      }),
    );
    const overlapping = heads.filter((h, i) => h.hidden || h.textRight > h.right + 0.5 || (i > 0 && h.textLeft < heads[i - 1].textRight - 0.5));
    check(
      heads.length === 7 && overlapping.length === 0,
      `the side panel's column headings are all in view and none overlaps another (${overlapping.map((h) => h.text).join(', ') || 'none'})`,
    );
    await page.screenshot({ path: join(artifacts, '03-edge-flows.png') });

    // The flow whose trace names the platform tier's policy.
    const n = await rows.count();
    let found = false;
    for (let i = 0; i < n && !found; i++) {
      await rows.nth(i).getByRole('button').click();
      const trace = side.getByRole('region', { name: 'Enforced trace' });
      await trace.waitFor();
      found = (await trace.textContent()).includes('platform|pci-isolation');
    }
    check(found, 'opening a denied flow shows the trace naming platform|pci-isolation');
    const detail = side.getByRole('region', { name: 'Flow detail' });
    const dtext = await detail.textContent();
    check(dtext.includes('Source: shop/frontend') && dtext.includes('Destination: shop/payment') && dtext.includes('pci=true'), 'the detail shows both endpoints with their labels');
    await page.screenshot({ path: join(artifacts, '04-flow-detail.png') });
    await side.getByRole('link', { name: 'policy platform|pci-isolation' }).click();
    const card = page.getByRole('article', { name: 'Policy platform|pci-isolation' });
    await card.waitFor();
    const rule1 = await card.evaluate((c) =>
      [...c.querySelectorAll('tbody tr')].map((tr) => [...tr.cells].map((td) => td.textContent)).find((cells) => cells[0] === 'ingress' && cells[1] === '1'),
    );
    check(rule1 && rule1[2] === 'Deny' && Number(rule1[4]) > 0 && rule1[7] !== 'never', `the trace links to the policy board; pci-isolation's ingress rule 1 counts its hits (${rule1})`);
    await page.screenshot({ path: join(artifacts, '05-policy-board.png'), fullPage: false });

    // Policy board: Apply first shows the preview of the observed flows that would flip; only the confirmation
    // applies. The shop's `api` policy lets frontend reach the api tier; let it admit checkout instead.
    const knpIngress = () => {
      const o = JSON.parse(must(porinCli(['get', 'knp', 'api', '-n', 'shop', '-o', 'json'], socket), 'get knp api').stdout);
      return JSON.stringify((o.items ? o.items[0] : o).spec.ingress);
    };
    const ingressBefore = knpIngress();
    const apiCard = page.getByRole('article', { name: 'Policy default|shop/knp.api' });
    await apiCard.getByRole('button', { name: 'Edit shop/knp.api' }).click();
    const editor = apiCard.getByRole('form', { name: 'Edit shop/knp.api' });
    const yamlBox = editor.getByRole('textbox', { name: 'Policy YAML' });
    const original = await yamlBox.inputValue();
    await yamlBox.fill(original.replace('app: frontend', 'app: checkout'));
    await editor.getByRole('button', { name: 'Apply', exact: true }).click();
    const applyPreview = editor.getByRole('region', { name: 'Preview of the apply' });
    await applyPreview.waitFor({ timeout: 20000 });
    const flipRow = applyPreview.getByRole('row', { name: 'shop/frontend → shop/cart TCP/9000: allowed → denied, breaking', exact: true });
    const summary = await applyPreview.locator('.preview-summary').textContent();
    check(
      original.includes('app: frontend') && (await flipRow.count()) === 1 && /breaks/.test(await flipRow.getAttribute('class')) && /^[1-9]\d* allowed → denied \(breaking\)/.test(summary),
      `Apply first shows the preview: frontend → cart TCP/9000 would flip allowed → denied, marked breaking (${summary.slice(0, 80)})`,
    );
    check(knpIngress() === ingressBefore, 'nothing is applied while the preview is shown');
    await applyPreview.scrollIntoViewIfNeeded();
    await page.screenshot({ path: join(artifacts, '05b-apply-preview.png'), fullPage: false });
    await editor.getByRole('button', { name: /^Confirm apply/ }).click();
    await editor.getByRole('status').filter({ hasText: /Applied at revision/ }).waitFor({ timeout: 15000 });
    check(knpIngress() !== ingressBefore && knpIngress().includes('checkout'), 'Confirm apply applies the previewed change');
    // Put the shop's policies back for what follows.
    must(porinCli(['apply', '-f', join(repo, 'examples/shop/20-shop-policies.yaml')], socket), 'restore shop policies');
    must(porin(['wait']), 'lab wait');
    check(knpIngress() === ingressBefore, 'the shop policies are restored');

    // Flows view: follows live.
    await page.getByRole('link', { name: 'Flows' }).click();
    await page.locator('table.flows tbody tr').first().waitFor({ timeout: 15000 });
    const before = await page.evaluate(() => ({ n: window.__porin.table.received, top: document.querySelector('table.flows tbody tr')?.textContent }));
    must(porin(['probe', '--port', '9000']), 'probe again');
    await page.waitForFunction(
      (b) => window.__porin.table.received > b.n && document.querySelector('table.flows tbody tr')?.textContent !== b.top,
      before,
      { timeout: 20000 },
    );
    check(true, 'the flows table follows new flows live');
    await page.screenshot({ path: join(artifacts, '06-flows.png') });

    // A cross-site page cannot use the session: another site (an attacker's page on localhost, another port)
    // posts a form to the API and navigates to it.
    const evilServer = createServer((_, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end('<!doctype html><title>elsewhere</title><body>another site</body>');
    });
    await new Promise((r) => evilServer.listen(0, '127.0.0.1', r));
    const evil = `http://localhost:${evilServer.address().port}/`;
    await page.goto(evil);
    await page.evaluate((target) => {
      const f = document.createElement('form');
      f.method = 'POST';
      f.action = target;
      f.enctype = 'text/plain';
      const i = document.createElement('input');
      i.name = 'apiVersion: v1\nkind: Namespace\nmetadata: {name: porin-evil}\n#';
      i.value = '';
      f.append(i);
      document.body.append(f);
      f.submit();
    }, new URL('/porin/v1/console/apply', url).href);
    await page.waitForURL(/console\/apply/);
    const crossPost = await page.textContent('body');
    check(/Unauthorized|Forbidden/.test(crossPost) && !must(porinCli(['get', 'ns'], socket), 'get ns').stdout.includes('porin-evil'), `a cross-site form POST does not carry the session, nothing applied (${crossPost.slice(0, 120)})`);
    await page.goto(evil);
    await page.evaluate((target) => {
      location.href = target;
    }, new URL('/porin/v1/console/graph?window=1h', url).href);
    await page.waitForURL(/console\/graph/);
    const crossGet = await page.textContent('body');
    check(!crossGet.includes('frontend') && /Unauthorized/.test(crossGet), `a navigation started by another site gets no data (${crossGet.slice(0, 120)})`);

    evilServer.close();
    check(!requested.some((u) => u.includes(token) || (sess && u.includes(sess.value))), 'no token or session id in any URL the browser requested');
    await ctx.close();

    // --- A scoped token (namespace ops, tier default) does not see the shop.
    const sctx = await browser.newContext({ viewport: { width: 1600, height: 1000 } });
    const sp = await sctx.newPage();
    await sp.goto(url);
    await sp.getByLabel('Porin token').fill(scoped);
    await sp.getByRole('button', { name: 'Sign in' }).click();
    await sp.getByRole('navigation', { name: 'Graph items' }).waitFor();
    await sp.getByRole('button', { name: 'ops/loadgen', exact: true }).waitFor({ timeout: 15000 });
    await sp.waitForTimeout(500);
    const items = await sp.getByRole('navigation', { name: 'Graph items' }).textContent();
    check(!items.includes('shop/') && items.includes('outside your scope'), 'the scoped token sees its namespace and "outside your scope", no shop workload');
    await sp.screenshot({ path: join(artifacts, '07-scoped-graph.png') });
    {
      const r = await sctx.request.get(new URL('/porin/v1/console/policies?window=24h', url).href, { headers: { 'X-Porin-Console': '1' } });
      const b = await r.json();
      const bad = [
        ...b.policies.filter((p) => p.namespace !== 'ops' || p.tier !== 'default').map((p) => p.traceName),
        ...b.tiers.filter((t) => t.metadata.name !== 'default').map((t) => `tier ${t.metadata.name}`),
        ...b.hits.filter((h) => h.tier !== 'default' || !h.policy.startsWith('ops/')).map((h) => h.entry),
      ];
      check(r.status() === 200 && b.policies.length > 0 && bad.length === 0, `scoped API policies: only namespace ops, tier default (${b.policies.length} policies; outside: ${bad})`);
    }
    for (const path of ['graph?window=1h', 'flows?arg=--since&arg=1h', 'flows?arg=--namespace&arg=shop']) {
      const r = await sctx.request.get(new URL(`/porin/v1/console/${path}`, url).href, { headers: { 'X-Porin-Console': '1' } });
      const body = await r.text();
      check(r.status() === 200 && !body.includes('shop') && !body.includes('pci-isolation'), `scoped API ${path}: nothing of namespace shop or tier platform`);
    }
    await sp.getByRole('link', { name: 'Flows' }).click();
    await sp.locator('table.flows tbody tr').first().waitFor({ timeout: 15000 });
    check(!(await sp.locator('table.flows').textContent()).includes('shop/'), 'the scoped flows table shows no shop endpoint');
    await sp.screenshot({ path: join(artifacts, '08-scoped-flows.png') });
    await sctx.close();

    // --- Recommendations: ops's egress left to default allow (its policy and zero-trust mode deleted), a
    // RecommendationScope learning for ops; the view shows it Learning → ... → Stable, previews it, dismisses
    // and relearns it, promotes it; read-only only sees.
    must(porinCli(['delete', 'pnp', 'ops-egress', '-n', 'ops'], socket), 'delete ops-egress');
    must(porinCli(['delete', 'clustersettings', 'default'], socket), 'delete zero-trust mode');
    must(porinCli(['apply', '-f', '-'], socket, REC_SCOPE), 'apply RecommendationScope');
    must(porin(['wait']), 'lab wait');
    must(porin(['probe', '--port', '9000']), 'probe for recommendations');
    const rctx = await browser.newContext({ viewport: { width: 1600, height: 1000 } });
    const rp = await rctx.newPage();
    await rp.goto(url);
    await rp.getByLabel('Porin token').fill(token);
    await rp.getByRole('button', { name: 'Sign in' }).click();
    await rp.getByRole('navigation', { name: 'Graph items' }).waitFor();
    await rp.getByRole('link', { name: 'Recommendations' }).click();
    const recCard = rp.getByRole('article', { name: 'Recommendation for ops' });
    await recCard.waitFor({ timeout: 30000 });
    const firstStatus = await recCard.getByLabel('Status').textContent();
    check(['Learning', 'Stabilizing', 'Stable'].includes(firstStatus), `the Recommendations view lists ops's recommendation with its status (${firstStatus})`);
    await rp.waitForFunction(() => document.querySelector('article[aria-label="Recommendation for ops"] [aria-label="Status"]')?.textContent === 'Stable', null, { timeout: 30000 });
    check(true, 'the status becomes Stable live (Learning → Stabilizing → Stable)');
    await recCard.getByRole('button', { name: 'Preview ops' }).click();
    const pv = recCard.getByRole('region', { name: 'Preview of ops' });
    await pv.waitFor({ timeout: 15000 });
    const pvText = await pv.textContent();
    check(/would change verdict|allowed → denied/.test(pvText) && /flow records over 24h/.test(pvText), `Preview replays the observed flows (${pvText.slice(0, 100)})`);
    await rp.screenshot({ path: join(artifacts, '09-recommendations.png') });
    await recCard.getByRole('button', { name: 'Dismiss ops' }).click();
    await rp.waitForFunction(() => document.querySelector('article[aria-label="Recommendation for ops"] [aria-label="Status"]')?.textContent === 'Dismissed', null, { timeout: 15000 });
    const snp = JSON.parse(must(porinCli(['get', 'snp', '-n', 'ops', '-o', 'json'], socket), 'get snp').stdout);
    check(snp.items.length === 1 && snp.items[0].spec.stagedAction === 'Ignore', 'Dismiss sets stagedAction Ignore');

    // Read-only: sees it, no buttons to act, and the API refuses the verb.
    const vctx = await browser.newContext({ viewport: { width: 1600, height: 1000 } });
    const vp = await vctx.newPage();
    await vp.goto(url);
    await vp.getByLabel('Porin token').fill(viewer);
    await vp.getByRole('button', { name: 'Sign in' }).click();
    await vp.getByRole('navigation', { name: 'Graph items' }).waitFor();
    await vp.getByRole('link', { name: 'Recommendations' }).click();
    const vCard = vp.getByRole('article', { name: 'Recommendation for ops' });
    await vCard.waitFor({ timeout: 15000 });
    const vButtons = await vCard.getByRole('button').allTextContents();
    check(vButtons.join() === 'Preview ops', `read-only sees the recommendation and can only preview (${vButtons})`);
    const denied = await vctx.request.post(new URL('/porin/v1/console/recommendations/ops/accept', url).href, {
      headers: { 'X-Porin-Console': '1', Authorization: `Bearer ${viewer}` },
    });
    const stillStaged = JSON.parse(must(porinCli(['get', 'snp', '-n', 'ops', '-o', 'json'], socket), 'get snp').stdout).items.length === 1;
    check(denied.status() === 403 && stillStaged, `read-only cannot promote through the API (${denied.status()}), nothing written`);
    await vp.screenshot({ path: join(artifacts, '10-recommendations-read-only.png') });
    await vctx.close();

    await recCard.getByRole('button', { name: 'Relearn ops' }).click();
    await rp.waitForFunction(() => ['Learning', 'Stabilizing'].includes(document.querySelector('article[aria-label="Recommendation for ops"] [aria-label="Status"]')?.textContent), null, { timeout: 15000 });
    check(true, 'Relearn sends it back to learning');
    await recCard.getByRole('button', { name: 'Promote ops' }).click();
    await recCard.waitFor({ state: 'detached', timeout: 15000 });
    const pnp = JSON.parse(must(porinCli(['get', 'pnp', '-n', 'ops', '-o', 'json'], socket), 'get pnp').stdout);
    check(pnp.items.some((i) => i.metadata.name === 'namespace-isolation.ops-recommendation'), 'Promote makes it an enforced NetworkPolicy and it leaves the list');
    await rctx.close();
  } finally {
    await browser.close();
    porin(['down']);
    rmSync(stateDir, { recursive: true, force: true });
  }
  writeFileSync(join(artifacts, 'e2e-result.txt'), failures ? `${failures} failure(s)\n` : 'all passed\n');
  if (failures) {
    console.log(`${failures} check(s) failed`);
    process.exit(1);
  }
  console.log('console e2e: all checks passed');
}

main().catch((e) => {
  console.error(e);
  porin(['down']);
  process.exit(1);
});
