import type { Task } from '../../catalog/tasks.js';
import type { TaskDispatcher } from '../../controller/task-dispatch.js';
import {
  claimAnswer,
  claimRequest,
  completeRequest,
  DATAMOVER_USER_NAME,
  failRequest,
  hostHeartbeatAnswer,
  leaseAnswer,
  ownerBody,
  PROTOCOL_PREFIX,
  progressRequest,
  registerHostAnswer,
  registerHostRequest,
  taskStateAnswer,
} from '../../datamover/protocol.js';
import type { AuthContext } from '../auth.js';
import { ApiError } from '../errors.js';
import { type ApiRouter, NO_CONTENT } from '../router.js';
import { idParams } from '../schemas.js';
import type { ApiServices } from '../services.js';

/**
 * The datamover protocol (docs/datamover-protocol.md): what datamovers call to register their host,
 * pull tasks, report progress and outcomes. Only tokens with the datamover capability (the
 * `datamover` service user's) or admins' may call it: datamovers hold tokens, never database
 * credentials.
 */

function datamoverOnly(auth: AuthContext): void {
  if (auth.isAdmin || auth.user.name === DATAMOVER_USER_NAME) return;
  throw new ApiError(
    'FORBIDDEN',
    `the datamover protocol needs a token of the ${DATAMOVER_USER_NAME} user or an admin`,
  );
}

function dispatcherOf(services: ApiServices): TaskDispatcher {
  // registerDatamoverRoutes is only called when taskDispatch is present.
  return services.taskDispatch as TaskDispatcher;
}

function claimedTaskOut(task: Task, leaseMs: number) {
  return {
    id: task.id,
    job_id: task.job_id,
    kind: task.kind,
    payload: task.payload,
    attempt: task.attempts,
    max_attempts: task.max_attempts,
    lease_ms: leaseMs,
    lease_expires_at: task.lease_expires_at,
  };
}

export function registerDatamoverRoutes(router: ApiRouter): void {
  const tag = 'datamover';

  router.add({
    method: 'POST',
    url: `${PROTOCOL_PREFIX}/hosts`,
    summary: 'Register (or refresh) the host of a datamover; idempotent by name',
    tag,
    access: 'user',
    body: registerHostRequest,
    response: registerHostAnswer,
    handler: async ({ auth, body, services }) => {
      datamoverOnly(auth);
      const dispatcher = dispatcherOf(services);
      const host = await dispatcher.registerHost({
        name: body.name,
        address: body.address,
        version: body.version,
        libvirtUri: body.libvirt_uri,
        taskKinds: body.task_kinds,
      });
      return {
        host_id: host.id,
        name: host.name,
        lease_ms: dispatcher.leaseMs,
        claim_wait_ms: dispatcher.claimWaitMs,
      };
    },
  });

  router.add({
    method: 'POST',
    url: `${PROTOCOL_PREFIX}/hosts/:id/heartbeat`,
    summary: 'The host is alive (sent while all its task slots are busy and it makes no claims)',
    tag,
    access: 'user',
    params: idParams,
    response: hostHeartbeatAnswer,
    handler: async ({ auth, params, services }) => {
      datamoverOnly(auth);
      const host = await dispatcherOf(services).hostHeartbeat(params.id);
      return { host_id: host.id, status: host.status };
    },
  });

  router.add({
    method: 'POST',
    url: `${PROTOCOL_PREFIX}/hosts/:id/claim`,
    summary: 'Long poll: lease the next task of this host (204 when none came within the wait)',
    tag,
    access: 'user',
    params: idParams,
    body: claimRequest,
    response: claimAnswer,
    handler: async ({ auth, params, body, services, reply }) => {
      datamoverOnly(auth);
      const dispatcher = dispatcherOf(services);
      // A datamover that hangs up ends the wait. (A task leased in the instant it hung up is
      // leased to nobody: its lease runs out and the sweeper queues it again.)
      const gone = new AbortController();
      const onClose = () => {
        if (!reply.raw.writableFinished) gone.abort();
      };
      reply.raw.on('close', onClose);
      try {
        const task = await dispatcher.claim(
          params.id,
          body.owner,
          body.wait_ms ?? dispatcher.claimWaitMs,
          gone.signal,
        );
        if (!task) return NO_CONTENT;
        return { task: claimedTaskOut(task, dispatcher.leaseMs) };
      } finally {
        reply.raw.off('close', onClose);
      }
    },
  });

  const leaseOut = (s: { cancelRequested: boolean; leaseExpiresAt: string | null; leaseMs: number }) => ({
    cancel_requested: s.cancelRequested,
    lease_expires_at: s.leaseExpiresAt,
    lease_ms: s.leaseMs,
  });

  router.add({
    method: 'POST',
    url: `${PROTOCOL_PREFIX}/tasks/:id/progress`,
    summary: 'Report progress (bytes done/total, a message); renews the lease; says whether to stop',
    tag,
    access: 'user',
    params: idParams,
    body: progressRequest,
    response: leaseAnswer,
    handler: async ({ auth, params, body, services }) => {
      datamoverOnly(auth);
      const { owner, ...update } = body;
      return leaseOut(await dispatcherOf(services).progress(params.id, owner, update));
    },
  });

  router.add({
    method: 'POST',
    url: `${PROTOCOL_PREFIX}/tasks/:id/heartbeat`,
    summary: 'Renew the lease of a running task; says whether to stop',
    tag,
    access: 'user',
    params: idParams,
    body: ownerBody,
    response: leaseAnswer,
    handler: async ({ auth, params, body, services }) => {
      datamoverOnly(auth);
      return leaseOut(await dispatcherOf(services).heartbeat(params.id, body.owner));
    },
  });

  const stateOut = (t: Task) => ({ id: t.id, status: t.status });

  router.add({
    method: 'POST',
    url: `${PROTOCOL_PREFIX}/tasks/:id/complete`,
    summary: 'The task succeeded: record its result (JSON)',
    tag,
    access: 'user',
    params: idParams,
    body: completeRequest,
    response: taskStateAnswer,
    handler: async ({ auth, params, body, services }) => {
      datamoverOnly(auth);
      return stateOut(await dispatcherOf(services).complete(params.id, body.owner, body.result ?? null));
    },
  });

  router.add({
    method: 'POST',
    url: `${PROTOCOL_PREFIX}/tasks/:id/fail`,
    summary: 'The task failed: record a typed error (code + message)',
    tag,
    access: 'user',
    params: idParams,
    body: failRequest,
    response: taskStateAnswer,
    handler: async ({ auth, params, body, services }) => {
      datamoverOnly(auth);
      const { owner, ...failure } = body;
      return stateOut(await dispatcherOf(services).fail(params.id, owner, failure));
    },
  });

  router.add({
    method: 'POST',
    url: `${PROTOCOL_PREFIX}/tasks/:id/cancelled`,
    summary: 'The task stopped because its job was cancelled',
    tag,
    access: 'user',
    params: idParams,
    body: ownerBody,
    response: taskStateAnswer,
    handler: async ({ auth, params, body, services }) => {
      datamoverOnly(auth);
      return stateOut(await dispatcherOf(services).cancelled(params.id, body.owner));
    },
  });
}
