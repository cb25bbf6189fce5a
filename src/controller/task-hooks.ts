import type { Job } from '../catalog/jobs.js';
import type { CatalogDb } from '../catalog/schema.js';
import type { Task } from '../catalog/tasks.js';

/**
 * What domain services plug into the task plumbing. Hooks run in the controller right after the
 * catalog recorded an outcome, exactly once per outcome (the conditional UPDATE that records it
 * returns the row to one caller only), and before the job is settled — so a hook may add tasks to
 * the job to continue it. A hook that throws never undoes the outcome: its error is logged and
 * appended to the job's messages as a warning. Hooks of a controller that dies between the
 * outcome and the hook do not run; domain services repair such leftovers at start (docs).
 */

export interface TaskEvent {
  db: CatalogDb;
  task: Task;
  job: Job;
}

export interface TaskFailedEvent extends TaskEvent {
  /** Why, as recorded on the task (`CODE: message`, or the lease-expiry reason). */
  reason: string;
  /** The datamover stopped reporting and the lease ran out (the sweeper failed the task). */
  leaseExpired: boolean;
}

export interface TaskKindHooks {
  onTaskSucceeded?(event: TaskEvent): Promise<void> | void;
  onTaskFailed?(event: TaskFailedEvent): Promise<void> | void;
  onTaskCancelled?(event: TaskEvent): Promise<void> | void;
}

export interface JobKindHooks {
  /** The job reached succeeded, failed or cancelled. */
  onJobFinished?(event: { db: CatalogDb; job: Job }): Promise<void> | void;
}

export class TaskHookRegistry {
  private readonly tasks = new Map<string, TaskKindHooks[]>();
  private readonly jobs = new Map<string, JobKindHooks[]>();

  /** Adds hooks for a task kind (several registrations of one kind all run, in order). */
  onTask(kind: string, hooks: TaskKindHooks): () => void {
    return add(this.tasks, kind, hooks);
  }

  /** Adds hooks for a job kind. */
  onJob(kind: string, hooks: JobKindHooks): () => void {
    return add(this.jobs, kind, hooks);
  }

  taskHooks(kind: string): readonly TaskKindHooks[] {
    return this.tasks.get(kind) ?? [];
  }

  jobHooks(kind: string): readonly JobKindHooks[] {
    return this.jobs.get(kind) ?? [];
  }
}

function add<H>(map: Map<string, H[]>, kind: string, hooks: H): () => void {
  const list = map.get(kind) ?? [];
  list.push(hooks);
  map.set(kind, list);
  return () => {
    const at = list.indexOf(hooks);
    if (at >= 0) list.splice(at, 1);
  };
}
