import { createHash } from 'node:crypto';

/**
 * The Agents dashboard served at `GET /`: one static page (no build step, no
 * external assets) that reads the job-side API with a viewer or admin token
 * the operator pastes once (kept in sessionStorage, never in the URL), and
 * refreshes itself every 2 s. Agents are grouped by pool.
 *
 * Its one style sheet and one script are inline and allowed by their sha256
 * in the Content-Security-Policy, so nothing else can run on the page: an
 * agent's hostname or a job's fields are only ever inserted escaped, and even
 * a missed escape could neither run script nor load anything.
 */
export const DASHBOARD_REFRESH_MS = 2000;

const STYLE = `
 body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
 header{background:#1d2330;color:#fff;padding:10px 20px;display:flex;gap:16px;align-items:center}
 header h1{font-size:16px;margin:0} header small{opacity:.7}
 main{padding:16px 20px;max-width:1200px}
 section{background:#fff;border:1px solid #dde1e7;border-radius:6px;margin:0 0 16px;padding:12px 16px}
 h2{font-size:15px;margin:0 0 8px}
 table{border-collapse:collapse;width:100%} th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eef0f3;font-variant-numeric:tabular-nums}
 th{font-weight:600;color:#555}
 .online{color:#0a7d32;font-weight:600} .offline{color:#b3261e;font-weight:600}
 .succeeded{color:#0a7d32} .failed{color:#b3261e} .leased{color:#8a5a00} .queued{color:#555} .cancelled{color:#777}
 #err{color:#b3261e} form{display:flex;gap:8px} input{flex:1;padding:6px}
`;

// No backtick and no `${` below but the one interpolation: the script is hashed as written.
const SCRIPT = `
const REFRESH_MS = ${DASHBOARD_REFRESH_MS};
const $ = (s) => document.querySelector(s);
const esc = (v) => String(v ?? '').replace(/[&<>"']/g, (c) => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c]));
const ago = (t) => t ? Math.max(0, Math.round((Date.now() - Date.parse(t)) / 1000)) + ' s ago' : '—';
let token = sessionStorage.getItem('outpostToken') || '';
$('#tokenForm').addEventListener('submit', (e) => { e.preventDefault(); token = $('#token').value.trim();
  sessionStorage.setItem('outpostToken', token); refresh(); });
async function api(path) {
  const r = await fetch(path, { headers: { authorization: 'Bearer ' + token } });
  if (!r.ok) { const b = await r.json().catch(() => ({})); throw new Error((b.error && b.error.message) || r.status); }
  return r.json();
}
async function refresh() {
  if (!token) return;
  try {
    const [agents, jobs] = await Promise.all([api('/v1/agents'), api('/v1/jobs?limit=50')]);
    $('#login').style.display = 'none'; $('#err').textContent = '';
    const pools = {};
    for (const a of agents) (pools[a.pool] = pools[a.pool] || []).push(a);
    $('#pools').innerHTML = Object.keys(pools).sort().map((p) => '<section class="pool" data-pool="' + esc(p) + '"><h2>Pool ' + esc(p) +
      ' — ' + pools[p].filter((a) => a.status === 'online').length + ' of ' + pools[p].length + ' online</h2><table><thead><tr>' +
      '<th>agent</th><th>status</th><th>hostname</th><th>version</th><th>resources</th><th>in flight</th><th>last seen</th></tr></thead><tbody>' +
      pools[p].map((a) => '<tr class="agent" data-agent="' + esc(a.agentId) + '" data-status="' + esc(a.status) + '"><td>' + esc(a.agentId) +
        '</td><td class="' + esc(a.status) + '">' + esc(a.status) + '</td><td>' + esc(a.hostname) + '</td><td>' + esc(a.version) +
        '</td><td>' + esc((a.resources || []).join(', ')) + '</td><td>' + esc(a.inFlight) + '</td><td>' + ago(a.lastSeenAt) + '</td></tr>').join('') +
      '</tbody></table></section>').join('') || '<section>No agents have connected yet.</section>';
    $('#jobs tbody').innerHTML = (jobs.jobs || []).map((j) => '<tr class="job" data-job="' + esc(j.id) + '" data-status="' + esc(j.status) +
      '" data-agent="' + esc(j.agentId) + '"><td>' + esc(j.id) + '</td><td>' + esc(j.pool) + '</td><td>' + esc(j.type) + '</td><td>' + esc(j.resource) +
      '</td><td class="' + esc(j.status) + '">' + esc(j.status) + '</td><td>' + esc(j.attempt) + '/' + esc(j.maxAttempts) + '</td><td>' + esc(j.agentId) +
      '</td><td>' + ago(j.createdAt) + '</td><td>' + ago(j.finishedAt) + '</td></tr>').join('');
    $('#updated').textContent = 'updated ' + new Date().toLocaleTimeString();
  } catch (e) { $('#login').style.display = ''; $('#err').textContent = 'Cannot load: ' + e.message; }
}
refresh(); setInterval(refresh, REFRESH_MS);
`;

/** The page and the headers it must be served with. */
export interface DashboardPage {
  html: string;
  headers: Readonly<Record<string, string>>;
}

export function dashboardPage(opts: { version: string }): DashboardPage {
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Outpost — Agents</title>
<style>${STYLE}</style></head>
<body>
<header><h1>Outpost · Integrations → Agents</h1><small>integration-proxy ${escapeHtml(opts.version)}</small>
<small id="updated"></small></header>
<main>
<section id="login"><h2>Sign in</h2>
<p>Paste a viewer token (read-only: <code>integration-proxy token create --pool NAME --role viewer</code>) or an admin token.</p>
<form id="tokenForm"><input id="token" type="password" autocomplete="off" placeholder="viewer or admin token">
<button>Show</button></form><p id="err"></p></section>
<div id="pools"></div>
<section><h2>Recent jobs</h2><table id="jobs"><thead><tr>
<th>job</th><th>pool</th><th>type</th><th>resource</th><th>status</th><th>attempt</th><th>agent</th><th>created</th><th>finished</th>
</tr></thead><tbody></tbody></table></section>
</main>
<script>${SCRIPT}</script></body></html>`;
  return { html, headers: DASHBOARD_HEADERS };
}

const sha256 = (text: string) => `'sha256-${createHash('sha256').update(text, 'utf8').digest('base64')}'`;

/**
 * Only this page's own script and style run; it talks only to its origin
 * (`connect-src 'self'`), may not be framed (clickjacking), sends no Referer,
 * and its type is not sniffed.
 */
const DASHBOARD_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-store',
  'content-security-policy': [
    "default-src 'none'",
    `script-src ${sha256(SCRIPT)}`,
    `style-src ${sha256(STYLE)}`,
    "connect-src 'self'",
    "img-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; '),
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'x-content-type-options': 'nosniff',
  'cross-origin-opener-policy': 'same-origin',
});

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}
