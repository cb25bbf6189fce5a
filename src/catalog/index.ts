/** The catalog: schema, migrations and one typed query module per concept. */
export * from './audit.js';
export * from './errors.js';
export * from './hosts.js';
export * from './ids.js';
export * from './jobs.js';
export * from './names.js';
export * from './open.js';
export * from './page.js';
export * from './projects.js';
export * from './restores.js';
export type * from './schema.js';
export * from './snapshots.js';
export * from './status.js';
export * from './targets.js';
export * from './time.js';
export * from './tokens.js';
export * from './users.js';
export * from './workloads.js';
