// The console's API client. Authentication is the session cookie (HttpOnly: scripts never see it); every
// request carries X-Porin-Console, writes also the session's CSRF token (kept in memory only). Nothing that
// authenticates is ever put in a URL.

export interface Me {
  user: string;
  role: 'admin' | 'read-only' | 'scoped' | 'cni';
  namespaces: string[] | null;
  tiers: string[] | null;
  canWrite: boolean;
  csrf?: string;
  expires?: string;
}

export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
  ) {
    super(message);
  }
}

let csrf = '';

const BASE = '/porin/v1/console';

function headers(write: boolean, extra: Record<string, string> = {}): Record<string, string> {
  const h: Record<string, string> = { 'X-Porin-Console': '1', ...extra };
  if (write && csrf) h['X-Porin-CSRF'] = csrf;
  return h;
}

async function check(r: Response): Promise<Response> {
  if (r.ok) return r;
  let msg = `${r.status} ${r.statusText}`;
  try {
    const j = await r.json();
    if (j && typeof j.message === 'string') msg = j.message;
  } catch {
    /* not JSON */
  }
  throw new ApiError(r.status, msg);
}

export async function login(token: string): Promise<Me> {
  const r = await check(
    await fetch(`${BASE}/login`, {
      method: 'POST',
      credentials: 'same-origin',
      headers: headers(false, { 'Content-Type': 'application/json' }),
      body: JSON.stringify({ token }),
    }),
  );
  const me = (await r.json()) as Me;
  csrf = me.csrf ?? '';
  return me;
}

export async function logout(): Promise<void> {
  await fetch(`${BASE}/logout`, { method: 'POST', credentials: 'same-origin', headers: headers(true) });
  csrf = '';
}

export async function session(): Promise<Me | null> {
  const r = await fetch(`${BASE}/session`, { credentials: 'same-origin', headers: headers(false) });
  if (r.status === 401) return null;
  const me = (await (await check(r)).json()) as Me;
  csrf = me.csrf ?? '';
  return me;
}

export async function getJson<T>(path: string, params?: URLSearchParams): Promise<T> {
  const q = params && [...params].length ? `?${params}` : '';
  const r = await check(await fetch(`${BASE}/${path}${q}`, { credentials: 'same-origin', headers: headers(false) }));
  return (await r.json()) as T;
}

export async function applyYaml(yamlText: string, dryRun = false): Promise<unknown> {
  const r = await check(
    await fetch(`${BASE}/apply${dryRun ? '?dryRun=All' : ''}`, {
      method: 'POST',
      credentials: 'same-origin',
      headers: headers(true, { 'Content-Type': 'application/yaml' }),
      body: yamlText,
    }),
  );
  return r.json();
}

/** The flows `yamlText` would flip if it were applied now (nothing is written; authorized as the apply). */
export async function previewApply<T>(yamlText: string, window = '24h'): Promise<T> {
  const r = await check(
    await fetch(`${BASE}/preview?${new URLSearchParams({ window })}`, {
      method: 'POST',
      credentials: 'same-origin',
      headers: headers(true, { 'Content-Type': 'application/yaml' }),
      body: yamlText,
    }),
  );
  return (await r.json()) as T;
}

/** Streams NDJSON records of `flows?arg=...&follow=true` into `onRecords` until `signal` aborts. */
export async function followFlows(
  args: string[],
  follow: boolean,
  onRecords: (recs: FlowRecord[]) => void,
  signal: AbortSignal,
): Promise<void> {
  const p = new URLSearchParams();
  for (const a of args) p.append('arg', a);
  if (follow) p.set('follow', 'true');
  const r = await check(
    await fetch(`${BASE}/flows?${p}`, { credentials: 'same-origin', headers: headers(false), signal }),
  );
  if (!r.body) return;
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    const recs = parseNdjson(buf);
    buf = recs.rest;
    if (recs.records.length) onRecords(recs.records);
  }
}

/** Splits complete NDJSON lines off `buf`: records (keep-alives and lag notes skipped) and the rest. */
export function parseNdjson(buf: string): { records: FlowRecord[]; rest: string } {
  const records: FlowRecord[] = [];
  let start = 0;
  for (;;) {
    const nl = buf.indexOf('\n', start);
    if (nl < 0) break;
    const line = buf.slice(start, nl).trim();
    start = nl + 1;
    if (!line) continue;
    try {
      const v = JSON.parse(line);
      if (v && typeof v === 'object' && 'verdict' in v) records.push(v as FlowRecord);
    } catch {
      /* a broken line is skipped */
    }
  }
  return { records, rest: buf.slice(start) };
}

export interface FlowEndpoint {
  kind: string;
  namespace?: string;
  pod?: string;
  workload?: string;
  network_set?: string;
  labels?: Record<string, string>;
  identity?: number;
  ip?: string;
  port?: number;
}

export interface FlowRecord {
  start_time: string;
  end_time: string;
  node: string;
  verdict: 'allowed' | 'denied';
  pending_verdict?: 'would_allow' | 'would_deny';
  drop_reason?: string;
  direction: string;
  reporter: string;
  protocol: string;
  icmp?: { type: number; code: number };
  src: FlowEndpoint;
  dst: FlowEndpoint;
  enforced_trace: string[];
  pending_trace?: string[];
  packets_src_to_dst: number;
  bytes_src_to_dst: number;
  packets_dst_to_src: number;
  bytes_dst_to_src: number;
  tcp_flags?: string[];
  flows_started: number;
  flows_completed: number;
  flows_open: number;
}

export interface GraphNode {
  id: string;
  kind: 'namespace' | 'workload' | 'networkset' | 'private' | 'internet' | 'host' | 'other';
  label: string;
  namespace?: string | null;
  parent?: string | null;
  labels?: Record<string, string>;
  pods?: string[];
}

export interface GraphEdge {
  id: string;
  source: string;
  target: string;
  verdict: 'allowed' | 'denied' | 'would-deny';
  connections: number;
  packets: number;
  bytes: number;
  records: number;
  lastSeen: string;
  ports: string[];
}

export interface Graph {
  nodes: GraphNode[];
  edges: GraphEdge[];
  window: string;
  generated: string;
}

/** A console write without a body (the recommendations' verbs). */
export async function postAction<T>(path: string): Promise<T> {
  const r = await check(await fetch(`${BASE}/${path}`, { method: 'POST', credentials: 'same-origin', headers: headers(true) }));
  return (await r.json()) as T;
}
