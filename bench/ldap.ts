/**
 * LDAP listing benchmark: the connector (in a child process, so that its
 * peak RSS is its own; pages serialised to JSON as the agent would) against
 * `ldapsearch -E pr=500/noprompt > /dev/null` on the same slapd, the same
 * data and the same attributes, in the same run. Wall and CPU times both:
 * on a shared machine wall time is noisy.
 *
 *   npm run -s build && node dist/bench/ldap.js [--users 100000] [--runs 3] [--page 500] [--through-agent] [--idle-seconds 1]
 *
 * With `--through-agent` each run also lists the accounts as a real job:
 * integration-proxy and agent processes from dist/ (SQLite store), enqueue →
 * succeeded, pages stored by the proxy; the agent's and the proxy's peak RSS
 * are their VmHWM; the agent's idle RSS is read after `--idle-seconds` online.
 * Prints one line per run and a JSON summary (times, ratio, peak RSS).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLdapConnector } from '../lib/connectors/ldap/index.js';
import { readSecretFile } from '../lib/config/secrets.js';
import { silentLogger } from '../lib/log/index.js';
import { systemClock } from '../lib/util/clock.js';
import { startSlapd } from '../spec/fixtures/slapd.js';
import { startAgentStack, type AgentStack } from './ldap-agent.js';

interface Args {
  users: number;
  runs: number;
  page: number;
  throughAgent: boolean;
  idleSeconds: number;
}

function args(argv: string[]): Args {
  const get = (name: string, dflt: number) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? Number(argv[i + 1]) : dflt;
  };
  return { users: get('users', 100_000), runs: get('runs', 3), page: get('page', 500), throughAgent: argv.includes('--through-agent'), idleSeconds: get('idle-seconds', 1) };
}

/** The attributes the connector asks for in an OpenLDAP account listing (see accountAttributes()). */
const ATTRIBUTES = ['cn', 'mail', 'displayName', 'givenName', 'sn', 'uid', 'entryUUID', 'pwdAccountLockedTime'];

interface ChildResult {
  ms: number;
  records: number;
  pages: number;
  bytes: number;
  maxRssMb: number;
  cpuMs: number;
}

/** Child mode: one listAccounts through the connector; pages are serialised as the agent would send them. */
async function child(configFile: string): Promise<void> {
  const config = JSON.parse(await import('node:fs').then((fs) => fs.readFileSync(configFile, 'utf8'))) as Record<string, unknown>;
  const ldap = createLdapConnector('bench', config, {
    log: silentLogger(),
    clock: systemClock,
    readSecret: (p) => readSecretFile(p, 'ldap password'),
  });
  let pages = 0;
  let bytes = 0;
  const started = performance.now();
  const cpu0 = process.cpuUsage();
  const res = await ldap.listAccounts(
    {},
    {
      signal: new AbortController().signal,
      log: silentLogger(),
      writePage: async (records) => {
        pages++;
        bytes += JSON.stringify({ seq: pages, records }).length;
      },
    },
  );
  const ms = performance.now() - started;
  const cpu = process.cpuUsage(cpu0);
  await ldap.close();
  const out: ChildResult = { ms, records: res.records, pages, bytes, maxRssMb: process.resourceUsage().maxRSS / 1024, cpuMs: (cpu.user + cpu.system) / 1000 };
  process.stdout.write(JSON.stringify(out) + '\n');
}

interface ToolResult {
  ms: number;
  entries: number;
  maxRssMb: number;
  cpuMs: number;
}

function ldapsearchArgs(url: string, bindDN: string, password: string, base: string, page: number): string[] {
  return ['-LLL', '-x', '-H', url, '-D', bindDN, '-w', password, '-b', base, '-E', `pr=${page}/noprompt`, '(objectClass=inetOrgPerson)', ...ATTRIBUTES];
}

/** Timed run: LDIF to /dev/null as a shell user would run it (capturing it in this process would slow it down). */
function ldapsearch(args: string[]): Omit<ToolResult, 'entries'> {
  const devNull = openSync('/dev/null', 'w');
  const started = performance.now();
  const r = spawnSync('/usr/bin/time', ['-f', 'MAXRSS_KB=%M CPU_S=%U+%S', 'ldapsearch', ...args], { stdio: ['ignore', devNull, 'pipe'], encoding: 'utf8' });
  const ms = performance.now() - started;
  closeSync(devNull);
  if (r.status !== 0) throw new Error(`ldapsearch failed: ${r.stderr.slice(-500)}`);
  const kb = Number(/MAXRSS_KB=(\d+)/.exec(r.stderr)?.[1] ?? 0);
  const cpu = /CPU_S=([\d.]+)\+([\d.]+)/.exec(r.stderr);
  return { ms, maxRssMb: kb / 1024, cpuMs: cpu ? (Number(cpu[1]) + Number(cpu[2])) * 1000 : 0 };
}

/** Untimed run that counts the entries, to check the connector's count against. */
function ldapsearchCount(args: string[]): number {
  const r = spawnSync('ldapsearch', args, { encoding: 'utf8', maxBuffer: 1024 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`ldapsearch failed: ${r.stderr.slice(-500)}`);
  return (r.stdout.match(/^dn: /gm) ?? []).length;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const a = args(process.argv.slice(2));
  const t0 = performance.now();
  const slapd = await startSlapd({ users: a.users });
  const setupMs = performance.now() - t0;
  try {
    const pwFile = join(slapd.dir, 'bench.pw');
    writeFileSync(pwFile, slapd.svcPassword + '\n');
    const cfgFile = join(slapd.dir, 'bench.json');
    const config = { kind: 'ldap', url: slapd.url, bindDN: slapd.svcDN, passwordFile: pwFile, baseDN: slapd.baseDN, userBase: slapd.peopleDN, pageSize: a.page };
    writeFileSync(cfgFile, JSON.stringify(config));
    console.log(`slapd with ${a.users} accounts ready in ${(setupMs / 1000).toFixed(1)} s; page size ${a.page}; ${a.runs} runs`);

    const lsArgs = ldapsearchArgs(slapd.url, slapd.svcDN, slapd.svcPassword, slapd.peopleDN, a.page);
    const expected = ldapsearchCount(lsArgs);
    const tools: ToolResult[] = [];
    const conns: ChildResult[] = [];
    const viaAgent: Array<{ ms: number; records: number; agentCpuMs: number; proxyCpuMs: number }> = [];
    let stack: AgentStack | undefined;
    if (a.throughAgent) stack = await startAgentStack(config, a.idleSeconds * 1000);
    try {
    for (let i = 0; i < a.runs; i++) {
      const t = { ...ldapsearch(lsArgs), entries: expected };
      tools.push(t);
      const out = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--child', cfgFile], { encoding: 'utf8' });
      const c = JSON.parse(out.trim().split('\n').pop()!) as ChildResult;
      conns.push(c);
      console.log(
        `run ${i + 1}: ldapsearch ${t.ms.toFixed(0)} ms, cpu ${t.cpuMs.toFixed(0)} ms (${t.entries} entries, ${t.maxRssMb.toFixed(1)} MB) | ` +
          `connector ${c.ms.toFixed(0)} ms, cpu ${c.cpuMs.toFixed(0)} ms (${c.records} records, ${c.pages} pages, ${(c.bytes / 1e6).toFixed(1)} MB JSON, peak RSS ${c.maxRssMb.toFixed(1)} MB)`,
      );
      if (c.records !== t.entries) throw new Error(`record counts differ: connector ${c.records}, ldapsearch ${t.entries}`);
      if (stack) {
        const j = await stack.listAccounts();
        viaAgent.push(j);
        console.log(
          `run ${i + 1}: through proxy + agent ${j.ms.toFixed(0)} ms (${j.records} records stored; cpu agent ${j.agentCpuMs} ms, proxy ${j.proxyCpuMs} ms; ` +
            `agent peak RSS so far ${stack.agentPeakRssMb().toFixed(1)} MB, proxy ${stack.proxyPeakRssMb().toFixed(1)} MB)`,
        );
        if (j.records !== t.entries) throw new Error(`record counts differ: agent ${j.records}, ldapsearch ${t.entries}`);
      }
    }
    } finally {
      await stack?.stop();
    }
    const summary = {
      users: a.users,
      pageSize: a.page,
      runs: a.runs,
      ldapsearchMedianMs: Math.round(median(tools.map((t) => t.ms))),
      connectorMedianMs: Math.round(median(conns.map((c) => c.ms))),
      ratio: Number((median(conns.map((c) => c.ms)) / median(tools.map((t) => t.ms))).toFixed(2)),
      ldapsearchMedianCpuMs: Math.round(median(tools.map((t) => t.cpuMs))),
      connectorMedianCpuMs: Math.round(median(conns.map((c) => c.cpuMs))),
      connectorPeakRssMb: Number(Math.max(...conns.map((c) => c.maxRssMb)).toFixed(1)),
      ldapsearchPeakRssMb: Number(Math.max(...tools.map((t) => t.maxRssMb)).toFixed(1)),
      // Issue 13, P4: through proxy + agent ≤ 1.3× ldapsearch, agent ≤ 120 MB, proxy ≤ 200 MB.
      targets: { ratioMax: 1.3, agentRssMaxMb: 120, proxyRssMaxMb: 200 },
      ...(stack
        ? {
            agentMedianMs: Math.round(median(viaAgent.map((j) => j.ms))),
            agentRatio: Number((median(viaAgent.map((j) => j.ms)) / median(tools.map((t) => t.ms))).toFixed(2)),
            agentPeakRssMb: Number(stack.agentPeakRssMb().toFixed(1)),
            agentMedianCpuMs: median(viaAgent.map((j) => j.agentCpuMs)),
            proxyMedianCpuMs: median(viaAgent.map((j) => j.proxyCpuMs)),
            proxyPeakRssMb: Number(stack.proxyPeakRssMb().toFixed(1)),
            agentIdleRssMb: Number(stack.agentIdleRssMb.toFixed(1)),
            agentIdleSeconds: a.idleSeconds,
          }
        : {}),
    };
    console.log(JSON.stringify(summary));
  } finally {
    await slapd.stop();
  }
}

const argv = process.argv.slice(2);
if (argv[0] === '--child') {
  await child(argv[1]!);
} else {
  await main();
}
