export * from './errors.js';
export * from './redact.js';
export * from './clock.js';
export * from './backoff.js';
export * from './abort.js';
export * from './lifecycle.js';
export * from './retry.js';
