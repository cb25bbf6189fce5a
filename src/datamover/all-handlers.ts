import { defaultTaskHandlers, type TaskHandlerRegistry } from './task-handlers.js';

/**
 * Every task handler a datamover process runs. Handler modules register themselves on import
 * (`registerTaskHandler(kind, handler)`); list each one here so `lifeboat datamover` and the
 * controller's local datamover both have it. `host.inventory` is built into task-handlers.ts.
 */
export function loadTaskHandlers(): TaskHandlerRegistry {
  return defaultTaskHandlers;
}
