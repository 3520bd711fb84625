export * from './version.js';
export * from './errors.js';
export * from './schemas.js';
export * from './operations.js';
export * from './validate.js';
