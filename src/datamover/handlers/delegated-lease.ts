import { TargetError } from '../../target/errors.js';
import { leaseActive, readLease, type WorkloadLease } from '../../target/lease.js';
import type { Target } from '../../target/target.js';

/**
 * The controller holds a workload's lease on the target for the whole snapshot job and hands its
 * token to the datamovers writing the VMs. This stands in for the lease in SnapshotWriter: every
 * "is it still held?" check reads lease.json and confirms the controller's token is the active one,
 * so a datamover whose controller lost the lease (another installation took over) stops writing.
 * Only the controller renews, releases and commits.
 */
export function delegatedLease(target: Target, workloadId: string, token: string): WorkloadLease {
  const check = async () => {
    const current = await readLease(target.backend, workloadId);
    const lease = current?.lease;
    if (!lease || lease.token !== token || !leaseActive(lease, new Date(), 0)) {
      throw new TargetError(
        'TARGET_LEASE_LOST',
        `workload ${workloadId}: the controller's lease on the target is gone`,
      );
    }
  };
  const shim = {
    workloadId,
    token,
    assertHeld: check,
    renew: check,
    release: async () => undefined,
  };
  // SnapshotWriter only uses workloadId and assertHeld(); WorkloadLease's private fields make the
  // structural type unreachable, hence the cast.
  return shim as unknown as WorkloadLease;
}
