import { AggregatorRegistry, type MetricValue, type Registry } from 'prom-client';
import type { Principal } from '../store/tokens.js';

/** The label that names a customer's pool: shown only to a scrape allowed to see that pool. */
const POOL_LABEL = 'pool';

/**
 * What a `/metrics` scrape may see. Many customers' pools share a proxy, and
 * a pool's name is the customer's business:
 * - the configured admin token sees every series as registered;
 * - an admin or viewer pool token sees the series of its own pool (and every
 *   series without a pool label);
 * - anyone else (no token, an agent token) gets every series with the `pool`
 *   label removed and the values summed over it: totals, no names.
 */
export type MetricsScope = { kind: 'all' } | { kind: 'pool'; pool: string } | { kind: 'anonymous' };

export function metricsScope(p: Principal | undefined): MetricsScope {
  if (!p || p.role === 'agent') return { kind: 'anonymous' };
  return p.pool === null ? { kind: 'all' } : { kind: 'pool', pool: p.pool };
}

/** The exposition text of `registry` as `scope` may see it. */
export async function renderMetrics(registry: Registry, scope: MetricsScope): Promise<string> {
  if (scope.kind === 'all') return registry.metrics();
  const metrics = await registry.getMetricsAsJSON();
  const view = metrics.map((m) => {
    const pooled = m.values.some((v) => POOL_LABEL in v.labels);
    const values =
      scope.kind === 'pool'
        ? m.values.filter((v) => v.labels[POOL_LABEL] === undefined || v.labels[POOL_LABEL] === scope.pool)
        : m.values.map((v) => ({ ...v, labels: withoutPool(v.labels) }));
    // Series that lost their pool label are summed (`sum`); others are kept as they are (`first`).
    return { ...m, values, aggregator: pooled && scope.kind === 'anonymous' ? 'sum' : 'first' };
  });
  return AggregatorRegistry.aggregate([view as never]).metrics();
}

function withoutPool(labels: MetricValue<string>['labels'] | undefined): MetricValue<string>['labels'] {
  if (!labels || !(POOL_LABEL in labels)) return labels ?? {};
  const { [POOL_LABEL]: _pool, ...rest } = labels;
  return rest;
}
