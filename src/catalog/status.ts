import { CatalogError } from './errors.js';

/**
 * The one place where status names and allowed transitions live (docs/jobs.md explains them). Every
 * status write in the catalog goes through `assertTransition` or a conditional UPDATE built from
 * `allowedFrom`, so a finished job never comes back to life and two writers cannot both win.
 */

export const JOB_STATUSES = ['queued', 'running', 'cancelling', 'succeeded', 'failed', 'cancelled'] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

export const TASK_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const;
export type TaskStatus = (typeof TASK_STATUSES)[number];

export const SNAPSHOT_STATUSES = ['creating', 'available', 'failed', 'deleting'] as const;
export type SnapshotStatus = (typeof SNAPSHOT_STATUSES)[number];

export const RESTORE_STATUSES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const;
export type RestoreStatus = (typeof RESTORE_STATUSES)[number];

type Machine<S extends string> = Readonly<Record<S, readonly S[]>>;

const JOB_TRANSITIONS: Machine<JobStatus> = {
  queued: ['running', 'cancelled', 'failed'],
  running: ['succeeded', 'failed', 'cancelling'],
  // A job asked to stop may still finish (succeeded/failed) before its tasks notice.
  cancelling: ['cancelled', 'succeeded', 'failed'],
  succeeded: [],
  failed: [],
  cancelled: [],
};

const TASK_TRANSITIONS: Machine<TaskStatus> = {
  queued: ['running', 'cancelled'],
  // running → queued: the lease expired and attempts remain, so another claimer may take it.
  running: ['succeeded', 'failed', 'cancelled', 'queued'],
  succeeded: [],
  failed: [],
  cancelled: [],
};

const SNAPSHOT_TRANSITIONS: Machine<SnapshotStatus> = {
  creating: ['available', 'failed'],
  available: ['deleting'],
  failed: ['deleting'],
  // A failed delete leaves the snapshot usable again.
  deleting: ['available', 'failed'],
};

const RESTORE_TRANSITIONS: Machine<RestoreStatus> = {
  queued: ['running', 'cancelled', 'failed'],
  running: ['succeeded', 'failed', 'cancelled'],
  succeeded: [],
  failed: [],
  cancelled: [],
};

const MACHINES = {
  job: JOB_TRANSITIONS,
  task: TASK_TRANSITIONS,
  snapshot: SNAPSHOT_TRANSITIONS,
  restore: RESTORE_TRANSITIONS,
} as const;

type Machines = typeof MACHINES;
export type StatusKind = keyof Machines;
type StatusOf<K extends StatusKind> = keyof Machines[K] & string;

export function canTransition<K extends StatusKind>(kind: K, from: StatusOf<K>, to: StatusOf<K>): boolean {
  const machine = MACHINES[kind] as Machine<string>;
  return machine[from]?.includes(to) ?? false;
}

export function assertTransition<K extends StatusKind>(kind: K, from: StatusOf<K>, to: StatusOf<K>): void {
  if (!canTransition(kind, from, to)) throw badTransition(kind, from, to);
}

/** The CATALOG_BAD_TRANSITION error of a refused status change (also when a conditional UPDATE lost). */
export function badTransition<K extends StatusKind>(
  kind: K,
  from: StatusOf<K>,
  to: StatusOf<K>,
): CatalogError {
  return new CatalogError('CATALOG_BAD_TRANSITION', `${kind} cannot go from ${from} to ${to}`, {
    details: { kind, from, to },
  });
}

/** The statuses from which `to` may be reached: the WHERE clause of a race-free status UPDATE. */
export function allowedFrom<K extends StatusKind>(kind: K, to: StatusOf<K>): StatusOf<K>[] {
  const machine = MACHINES[kind] as Machine<string>;
  return Object.keys(machine).filter((from) => machine[from].includes(to)) as StatusOf<K>[];
}

export function isTerminal<K extends StatusKind>(kind: K, status: StatusOf<K>): boolean {
  return (MACHINES[kind] as Machine<string>)[status]?.length === 0;
}
