import { LifeboatError } from '../errors.js';

/** Stable codes of the hypervisor layer; callers (datamover, cloud drivers) branch on these. */
export type HypervisorErrorCode =
  | 'LIBVIRT_UNREACHABLE' // virsh could not connect to the libvirt daemon at the URI
  | 'DOMAIN_NOT_FOUND' // no domain with that name or UUID
  | 'DOMAIN_EXISTS' // define/create would clash with an existing domain (name or UUID)
  | 'DOMAIN_RUNNING' // the operation needs a shut-off domain
  | 'DOMAIN_NOT_RUNNING' // the operation needs a running domain (checkpoints, backups, guest agent)
  | 'DOMAIN_BUSY' // libvirt's per-domain lock could not be taken in time (another job holds it)
  | 'CHECKPOINT_NOT_FOUND' // no checkpoint with that name on the domain
  | 'CHECKPOINT_EXISTS' // a checkpoint (or snapshot: libvirt calls both "moments") has that name already
  | 'CHECKPOINT_UNSUPPORTED' // a disk cannot carry a bitmap (raw, network...) or QEMU lacks support
  | 'BACKUP_JOB_ACTIVE' // a backup (or another block job) is already running on the domain
  | 'NO_BACKUP_JOB' // abort/dumpxml asked for a job that does not exist
  | 'GUEST_AGENT_UNAVAILABLE' // the guest agent is not configured or does not answer
  | 'INVALID_XML' // XML handed to or returned by libvirt that Lifeboat cannot use
  | 'INVALID_ARGUMENT' // a caller passed something that can never work (unknown disk target, bad name)
  | 'VIRSH_TIMEOUT' // virsh did not finish within its deadline (it is killed)
  | 'SHUTDOWN_TIMEOUT' // the guest did not power off after an ACPI shutdown request
  | 'VIRSH_FAILED' // any other libvirt failure; the message carries libvirt's own text
  | 'QEMU_IMG_FAILED' // qemu-img exited non-zero
  | 'QEMU_NBD_FAILED' // qemu-nbd did not start or did not create its socket
  | 'COMMAND_NOT_FOUND'; // virsh, qemu-img or qemu-nbd is not installed

export class HypervisorError extends LifeboatError {
  declare readonly code: HypervisorErrorCode;
  constructor(
    code: HypervisorErrorCode,
    message: string,
    options?: { cause?: unknown; details?: Record<string, unknown> },
  ) {
    super(code, message, options);
  }
}
