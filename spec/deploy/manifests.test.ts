import { describe, expect, it } from '@jest/globals';
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';

/**
 * Validates every Kubernetes manifest against the Kubernetes OpenAPI schemas
 * shipped by the `kubernetes-models` package (no cluster needed), then checks
 * the properties the operations guide promises.
 */
const require = createRequire(import.meta.url);
const DIR = join(process.cwd(), 'deploy/kubernetes');

type Obj = { apiVersion: string; kind: string; metadata: { name: string }; [k: string]: any };

function modelFor(apiVersion: string, kind: string): new (o: unknown) => { validate(): void } {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  const path = group ? `kubernetes-models/${group}/${version}/${kind}` : `kubernetes-models/${version}/${kind}`;
  return require(path)[kind];
}

const docs: Array<{ file: string; obj: Obj }> = [];
for (const file of readdirSync(DIR).filter((f) => f.endsWith('.yaml'))) {
  for (const doc of parseAllDocuments(readFileSync(join(DIR, file), 'utf8'))) {
    expect(doc.errors).toEqual([]);
    const obj = doc.toJS() as Obj | null;
    if (obj) docs.push({ file, obj });
  }
}
const find = (kind: string, name: string) => docs.find((d) => d.obj.kind === kind && d.obj.metadata.name === name)?.obj;

describe('Kubernetes manifests', () => {
  it('parse and every object validates against the Kubernetes schema', () => {
    expect(docs.length).toBeGreaterThanOrEqual(8);
    for (const { file, obj } of docs) {
      const Model = modelFor(obj.apiVersion, obj.kind);
      expect(() => new Model(obj).validate()).not.toThrow();
      expect([file, obj.metadata.name]).toEqual([file, expect.stringMatching(/^[a-z0-9-]+$/)]);
    }
  });

  it('a schema violation is caught (the validator is live)', () => {
    const dep = structuredClone(find('Deployment', 'outpost-agent')!);
    dep.spec.template.spec.containers[0].ports[0].containerPort = 'eighty';
    const Model = modelFor(dep.apiVersion, dep.kind);
    expect(() => new Model(dep).validate()).toThrow(/containerPort/);
  });

  it('agent Deployment: replicas across zones, drain fits the grace period, hardened, secrets as files', () => {
    const dep = find('Deployment', 'outpost-agent')!;
    const pod = dep.spec.template.spec;
    const c = pod.containers[0];
    expect(dep.spec.replicas).toBeGreaterThanOrEqual(2);
    expect(pod.topologySpreadConstraints.map((t: any) => t.topologyKey)).toContain('topology.kubernetes.io/zone');
    const agentJson = JSON.parse(find('ConfigMap', 'outpost-agent-config')!.data['agent.json']);
    expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThan(agentJson.shutdownGraceMs);
    expect(c.livenessProbe.httpGet.path).toBe('/healthz');
    expect(c.readinessProbe.httpGet.path).toBe('/readyz');
    expect(c.securityContext).toMatchObject({ readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } });
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    const secretVol = pod.volumes.find((v: any) => v.secret);
    expect(secretVol.secret.secretName).toBe('outpost-agent-secrets');
    expect(c.volumeMounts.find((m: any) => m.name === secretVol.name).mountPath).toBe('/run/secrets/outpost');
    expect(agentJson.proxy.tokenFile).toMatch(/^\/run\/secrets\/outpost\//);
    expect(c.envFrom.map((e: any) => e.configMapRef?.name)).toContain('outpost-agent-env');
    expect(Object.keys(find('ConfigMap', 'outpost-agent-env')!.data)).toEqual(expect.arrayContaining(['HTTPS_PROXY', 'NO_PROXY']));
    expect(c.env.find((e: any) => e.name === 'AGENT_ID').valueFrom.fieldRef.fieldPath).toBe('metadata.name');
    expect(find('PodDisruptionBudget', 'outpost-agent')!.spec.minAvailable).toBe(1);
  });

  it('proxy Deployment and Service exist for self-hosting on PostgreSQL', () => {
    const dep = find('Deployment', 'outpost-proxy')!;
    expect(dep.spec.template.spec.containers[0].args).toEqual(['integration-proxy', 'start']);
    expect(find('Secret', 'outpost-proxy-secrets')!.stringData.PROXY_STORE).toMatch(/^postgres:\/\//);
    expect(find('Service', 'outpost-proxy')!.spec.ports[0].targetPort).toBe('http');
  });
});

describe('Dockerfile', () => {
  const text = readFileSync(join(process.cwd(), 'Dockerfile'), 'utf8');
  it('is multi-stage on an even (LTS) Node line, non-root, with an init and a health check', () => {
    const froms = [...text.matchAll(/^FROM\s+(\S+)/gm)].map((m) => m[1]);
    expect(froms.length).toBeGreaterThanOrEqual(2);
    const major = Number(/ARG NODE_VERSION=(\d+)/.exec(text)?.[1]);
    expect(major % 2).toBe(0);
    expect(major).toBeGreaterThanOrEqual(22);
    expect(text).toMatch(/npm prune --omit=dev/);
    expect(text).toMatch(/^USER node$/m);
    expect(text).toMatch(/ENTRYPOINT \["\/usr\/bin\/tini", "--"\]/);
    expect(text).toMatch(/^HEALTHCHECK /m);
    expect(text).toMatch(/org\.opencontainers\.image\.version="\$\{VERSION\}"/);
  });
  it('.dockerignore keeps node_modules, .git and tests out of the context', () => {
    const ignore = readFileSync(join(process.cwd(), '.dockerignore'), 'utf8').split('\n');
    expect(ignore).toEqual(expect.arrayContaining(['node_modules', '.git', 'spec', 'dist']));
  });
});
