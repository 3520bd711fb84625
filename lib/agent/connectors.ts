import type { Connector, ConnectorDeps, ConnectorFactory } from '../connectors/types.js';
import type { ResourceConfig } from '../config/agent.js';
import { OutpostError } from '../util/errors.js';

/**
 * Builds one connector per configured resource with the factory of its
 * `kind`. Every error is a `config_error` that names `resources.<name>`,
 * so an operator sees which entry to fix. Factories do not connect yet.
 */
export function buildConnectors(
  resources: Record<string, ResourceConfig>,
  kinds: Record<string, ConnectorFactory>,
  deps: ConnectorDeps,
): Map<string, Connector> {
  const out = new Map<string, Connector>();
  for (const [name, config] of Object.entries(resources)) {
    const factory = kinds[config.kind];
    if (!factory) {
      const known = Object.keys(kinds).sort().join(', ') || 'none';
      throw new OutpostError('config_error', `invalid configuration: resources.${name}.kind: unknown kind "${config.kind}" (known: ${known})`);
    }
    // `allowUnsealedSecrets` is the dispatcher's (any kind), not the connector's: its strict schema never sees it.
    const { allowUnsealedSecrets: _dispatcherKey, ...own } = config;
    try {
      out.set(name, factory(name, own, deps));
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      const prefix = `resources.${name}`;
      const named = message.includes(prefix) ? message : `${prefix}: ${message}`;
      throw new OutpostError('config_error', named.startsWith('invalid configuration') ? named : `invalid configuration: ${named}`);
    }
  }
  return out;
}

/** Closes every connector, logging rather than throwing: shutdown must go on. */
export async function closeConnectors(connectors: Map<string, Connector>, onError: (name: string, err: unknown) => void): Promise<void> {
  await Promise.all(
    [...connectors].map(async ([name, c]) => {
      try {
        await c.close();
      } catch (err) {
        onError(name, err);
      }
    }),
  );
}
