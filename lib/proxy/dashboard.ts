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
 body{font:14px/1.45 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
 header{background:#1d2330;color:#fff;padding:10px 20px;display:flex;gap:16px;align-items:center;flex-wrap:wrap}
 header h1{font-size:16px;margin:0} header small{opacity:.75} header button{margin-left:auto}
 main{padding:16px 20px;max-width:1400px}
 section{background:#fff;border:1px solid #dde1e7;border-radius:6px;margin:0 0 16px;padding:12px 16px}
 h2{font-size:15px;margin:0 0 8px} h2 .sum{font-weight:400;color:#555;margin-left:6px}
 table{border-collapse:collapse;width:100%} th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eef0f3;vertical-align:top;font-variant-numeric:tabular-nums}
 th{font-weight:600;color:#555} td{white-space:nowrap} td.error,td.inflight,td.res{white-space:normal}
 h2.none{color:#b3261e}
 .badge{display:inline-block;padding:0 6px;border-radius:9px;font-size:12px;font-weight:600;margin-right:4px;white-space:nowrap}
 .s-online{background:#e3f4e8;color:#0a6a2b} .s-draining{background:#fff1d6;color:#7a4d00} .s-stale{background:#ffe2cc;color:#8f3b00}
 .s-offline{background:#f3dcdb;color:#9d1f17} .s-outdated{background:#e6e1fa;color:#4b2ca3} .s-upgrade{background:#9d1f17;color:#fff}
 .succeeded{color:#0a7d32} .failed{color:#b3261e;font-weight:600} .leased{color:#8a5a00} .queued{color:#555} .cancelled{color:#777}
 .running{color:#8a5a00} .expired,.unknown{color:#b3261e} .released{color:#555}
 .err{color:#b3261e} .err code{font-weight:600} .muted{color:#777}
 #err{color:#b3261e} form{display:flex;gap:8px} #tokenForm input{flex:1;padding:6px}
 .filters{display:flex;gap:16px;align-items:center;flex-wrap:wrap} .filters label{color:#555}
 a.job{color:#1a4fb5;cursor:pointer;text-decoration:underline;font-family:ui-monospace,monospace;font-size:12px}
 tr.job{cursor:pointer} tr.job:hover{background:#f3f6fb} tr.job.sel{background:#e8eefb}
 #detail h2 code{font-size:14px} dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:0 0 8px} dt{color:#555}
`;

// No backtick, no backslash and no dollar-brace below but the one interpolation: the script is hashed as written.
const SCRIPT = `
const REFRESH_MS = ${DASHBOARD_REFRESH_MS};
const PAGE = 50;
const $ = (s) => document.querySelector(s);
const esc = (v) => String(v ?? '').replace(/[&<>"']/g, (c) => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c]));
function ago(t) {
  if (!t) return '—';
  const s = Math.round((Date.now() - Date.parse(t)) / 1000), a = Math.abs(s);
  const txt = a < 5 ? 'just now' : a < 60 ? a + ' s' : a < 3600 ? Math.round(a / 60) + ' min' : a < 86400 ? Math.round(a / 3600) + ' h' : Math.round(a / 86400) + ' d';
  return a < 5 ? txt : s < 0 ? 'in ' + txt : txt + ' ago';
}
const when = (t) => t ? '<span title="' + esc(new Date(t).toLocaleString() + ' (' + t + ')') + '">' + esc(ago(t)) + '</span>' : '<span class="muted">—</span>';
function took(a, b) {
  if (!a || !b) return '';
  const ms = Date.parse(b) - Date.parse(a);
  return ms < 1000 ? ms + ' ms' : ms < 120000 ? (ms / 1000).toFixed(1) + ' s' : Math.round(ms / 60000) + ' min';
}
const badge = (cls, text, title) => '<span class="badge s-' + cls + '"' + (title ? ' title="' + esc(title) + '"' : '') + '>' + esc(text) + '</span>';
const STATUS_HELP = { online: 'polling for work', draining: 'stopping: takes no new jobs, finishing the ones it runs',
  stale: 'missed its expected contact (poll hold + 5 s): killed, frozen or cut off?', offline: 'said goodbye, or not seen within the presence window' };
const jobLink = (id) => '<a class="job" data-open="' + esc(id) + '">' + esc(id) + '</a>';
const errText = (e) => e ? '<span class="err"><code>' + esc(e.code) + '</code> ' + esc(e.message) + '</span>' : '';
let token = sessionStorage.getItem('outpostToken') || '';
let jobPages = 1, openJob = '';
const pools = new Set();
$('#tokenForm').addEventListener('submit', (e) => { e.preventDefault(); token = $('#token').value.trim();
  sessionStorage.setItem('outpostToken', token); $('#token').value = ''; refresh(); });
$('#signout').addEventListener('click', () => { sessionStorage.removeItem('outpostToken'); token = ''; location.reload(); });
for (const id of ['#fPool', '#fAgent', '#fJob']) $(id).addEventListener('change', () => { jobPages = 1; refresh(); });
$('#more').addEventListener('click', () => { jobPages++; refresh(); });
document.addEventListener('click', (e) => {
  const el = e.target.closest('[data-open]');
  if (el) { openJob = el.getAttribute('data-open'); refresh(); }
  if (e.target.closest('#closeDetail')) { openJob = ''; $('#detail').hidden = true; refresh(); }
});
async function api(path) {
  const r = await fetch(path, { headers: { authorization: 'Bearer ' + token } });
  if (r.status === 401) throw new Error('this token was refused (401): it is unknown, revoked or expired. Paste a viewer or admin token.');
  if (r.status === 403) throw new Error('this token may not read the dashboard (403): use a viewer or admin token, not an agent token.');
  if (!r.ok) { const b = await r.json().catch(() => ({})); throw new Error((b.error && b.error.message) || ('HTTP ' + r.status)); }
  return r.json();
}
async function allAgents(pool) {
  const out = [];
  let cursor = '';
  for (let i = 0; i < 20; i++) {
    const page = await api('/v1/agents?limit=500' + (pool ? '&pool=' + encodeURIComponent(pool) : '') + (cursor ? '&cursor=' + encodeURIComponent(cursor) : ''));
    out.push(...page.agents);
    if (!page.nextCursor) break;
    cursor = page.nextCursor;
  }
  return out;
}
async function someJobs(pool, status) {
  const out = [];
  let cursor = '', more = false;
  for (let i = 0; i < jobPages; i++) {
    const page = await api('/v1/jobs?limit=' + PAGE + (pool ? '&pool=' + encodeURIComponent(pool) : '') + (status ? '&status=' + status : '') + (cursor ? '&cursor=' + encodeURIComponent(cursor) : ''));
    out.push(...page.jobs);
    more = !!page.nextCursor;
    if (!more) break;
    cursor = page.nextCursor;
  }
  return { jobs: out, more };
}
function agentRow(a) {
  const flags = (a.upgradeRequired ? badge('upgrade', 'upgrade required', 'this version is below the proxy minimum (agents.minVersion): it gets no jobs') :
    a.outdated ? badge('outdated', 'outdated', 'older than the latest version (agents.latestVersion)') : '');
  const ids = a.inFlightJobs || [];
  return '<tr class="agent" data-agent="' + esc(a.agentId) + '" data-status="' + esc(a.status) + '" data-outdated="' + (a.outdated ? 'true' : 'false') + '"><td>' + esc(a.agentId) +
    '</td><td>' + badge(a.status, a.status, STATUS_HELP[a.status]) + flags + '</td><td>' + esc(a.hostname) + '</td><td>' + esc(a.version) +
    '</td><td class="res">' + (a.resources && a.resources.length ? esc(a.resources.join(', ')) : '<span class="muted">none</span>') + '</td><td class="inflight">' + (ids.length ? ids.map(jobLink).join(' ') + (a.inFlight > ids.length ? ' +' + (a.inFlight - ids.length) : '') : '<span class="muted">none</span>') +
    '</td><td>' + when(a.lastSeenAt) + '</td></tr>';
}
function poolSection(p, list, rows) {
  const n = (s) => list.filter((a) => a.status === s).length;
  const extra = ['draining', 'stale', 'offline'].filter((s) => n(s)).map((s) => n(s) + ' ' + s);
  const old = list.filter((a) => a.outdated).length;
  if (old) extra.push(old + ' outdated');
  const none = list.length && !n('online');
  return '<section class="pool" data-pool="' + esc(p) + '"><h2' + (none ? ' class="none"' : '') + '>Pool ' + esc(p) + ' — ' + n('online') + ' of ' + list.length + ' online' + (none ? ' (no agent takes jobs)' : '') +
    (extra.length ? '<span class="sum">· ' + esc(extra.join(' · ')) + '</span>' : '') + '</h2><table><thead><tr>' +
    '<th>agent</th><th>status</th><th>hostname</th><th>version</th><th>resources</th><th>in flight</th><th>last seen</th></tr></thead><tbody>' +
    (rows.map(agentRow).join('') || '<tr><td colspan="7" class="muted">no agent matches the filter</td></tr>') + '</tbody></table></section>';
}
function jobRow(j) {
  return '<tr class="job' + (j.id === openJob ? ' sel' : '') + '" data-open="' + esc(j.id) + '" data-job="' + esc(j.id) + '" data-status="' + esc(j.status) +
    '" data-agent="' + esc(j.agentId) + '"><td>' + esc(j.id) + '</td><td>' + esc(j.pool) + '</td><td>' + esc(j.type) + '</td><td>' + esc(j.resource) +
    '</td><td class="' + esc(j.status) + '">' + esc(j.status) + '</td><td>' + esc(j.attempt) + '/' + esc(j.maxAttempts) + '</td><td>' + esc(j.agentId) +
    '</td><td>' + when(j.createdAt) + '</td><td>' + when(j.finishedAt) + '</td><td class="error">' + errText(j.error) + '</td></tr>';
}
function detail(j) {
  const rows = (j.attempts || []).map((a) => '<tr class="attempt" data-agent="' + esc(a.agentId) + '" data-outcome="' + esc(a.outcome) + '"><td>' + esc(a.attempt) +
    '</td><td>' + esc(a.agentId) + '</td><td>' + when(a.startedAt) + '</td><td>' + when(a.endedAt) + '</td><td>' + esc(took(a.startedAt, a.endedAt)) +
    '</td><td class="' + esc(a.outcome) + '">' + esc(a.outcome) + '</td><td>' + errText(a.error) + '</td></tr>').join('');
  return '<h2>Job <code>' + esc(j.id) + '</code> <button id="closeDetail" type="button">close</button></h2><dl>' +
    '<dt>status</dt><dd class="' + esc(j.status) + '">' + esc(j.status) + '</dd><dt>type</dt><dd>' + esc(j.type) + (j.resource ? ' on ' + esc(j.resource) : '') +
    '</dd><dt>pool</dt><dd>' + esc(j.pool) + '</dd><dt>created</dt><dd>' + when(j.createdAt) + '</dd><dt>finished</dt><dd>' + when(j.finishedAt) + '</dd>' +
    (j.error ? '<dt>error</dt><dd>' + errText(j.error) + '</dd>' : '') + '</dl><table id="attempts"><thead><tr><th>attempt</th><th>agent</th><th>started</th><th>ended</th><th>took</th><th>outcome</th><th>error</th></tr></thead><tbody>' +
    (rows || '<tr><td colspan="7" class="muted">not leased yet</td></tr>') + '</tbody></table>';
}
function fillPools() {
  const sel = $('#fPool'), cur = sel.value;
  const have = new Set([...sel.options].map((o) => o.value));
  for (const p of [...pools].sort()) if (!have.has(p)) sel.add(new Option(p, p));
  sel.value = cur;
}
async function refresh() {
  if (!token) { $('#login').hidden = false; $('#app').hidden = true; return; }
  const pool = $('#fPool').value, agentStatus = $('#fAgent').value, jobStatus = $('#fJob').value;
  try {
    const [agents, jobs, job] = await Promise.all([allAgents(pool), someJobs(pool, jobStatus), openJob ? api('/v1/jobs/' + encodeURIComponent(openJob)) : null]);
    $('#login').hidden = true; $('#app').hidden = false; $('#signout').hidden = false; $('#err').textContent = '';
    const byPool = {};
    for (const a of agents) { pools.add(a.pool); (byPool[a.pool] = byPool[a.pool] || []).push(a); }
    for (const j of jobs.jobs) pools.add(j.pool);
    fillPools();
    const shown = (a) => !agentStatus || (agentStatus === 'outdated' ? a.outdated : a.status === agentStatus);
    $('#pools').innerHTML = Object.keys(byPool).sort().map((p) => poolSection(p, byPool[p], byPool[p].filter(shown))).join('') ||
      '<section>No agents have connected' + (pool ? ' to pool ' + esc(pool) : '') + ' yet.</section>';
    $('#jobs tbody').innerHTML = jobs.jobs.map(jobRow).join('') || '<tr><td colspan="10" class="muted">no jobs</td></tr>';
    $('#more').hidden = !jobs.more;
    if (job) { $('#detail').innerHTML = detail(job); $('#detail').hidden = false; }
    $('#updated').textContent = 'updated ' + new Date().toLocaleTimeString();
  } catch (e) {
    $('#err').textContent = 'Cannot load: ' + e.message;
    if (/401|403/.test(e.message)) { $('#login').hidden = false; $('#app').hidden = true; }
    else $('#updated').textContent = 'not updated since ' + ($('#updated').textContent.replace('updated ', '') || 'start') + ': ' + e.message;
  }
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
<small id="updated"></small><button id="signout" type="button" hidden>Sign out</button></header>
<main>
<section id="login"><h2>Sign in</h2>
<p>This page shows agents and jobs, and needs a <b>viewer</b> (read-only) or <b>admin</b> token of this integration-proxy.
Make a viewer token on the proxy host: <code>integration-proxy token create --pool NAME --role viewer</code>
(an agent token does not work here).</p>
<form id="tokenForm"><input id="token" type="password" autocomplete="off" placeholder="paste a viewer or admin token">
<button>Sign in</button></form>
<p class="muted">The token stays in this browser tab (sessionStorage) until you sign out or close the tab; it is never put in the URL.</p>
<p id="err"></p></section>
<div id="app" hidden>
<section class="filters"><label>Pool <select id="fPool"><option value="">all pools</option></select></label>
<label>Agents <select id="fAgent"><option value="">all</option><option>online</option><option>draining</option><option>stale</option><option>offline</option><option>outdated</option></select></label>
<label>Jobs <select id="fJob"><option value="">all</option><option>queued</option><option>leased</option><option>succeeded</option><option>failed</option><option>cancelled</option></select></label>
<span class="muted">Click a job for its attempts. Hover a time or a status for details.</span>
<span class="muted"><b>draining</b>: stopping, finishes its jobs, takes no new ones · <b>stale</b>: missed its expected contact (poll hold + 5 s) — killed, frozen or cut off · <b>offline</b>: said goodbye, or unseen for the presence window · <b>outdated</b>: older than the proxy’s latest agent version</span></section>
<div id="pools"></div>
<section id="detail" hidden></section>
<section><h2>Recent jobs</h2><table id="jobs"><thead><tr>
<th>job</th><th>pool</th><th>type</th><th>resource</th><th>status</th><th>attempt</th><th>agent</th><th>created</th><th>finished</th><th>error</th>
</tr></thead><tbody></tbody></table><button id="more" type="button" hidden>Show older jobs</button></section>
</div>
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

const HTML_ENTITIES: Readonly<Record<string, string>> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => HTML_ENTITIES[c] ?? c);
}
