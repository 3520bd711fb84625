/** The explicit state of every long-lived part (agent, poller, proxy server, connectors). */
export type LifecycleState = 'idle' | 'running' | 'draining' | 'stopped';
