import assert from 'node:assert/strict';
import { test } from 'node:test';
import { classifyVirshError, virshErrorText } from './virsh.js';

// Real stderr texts of virsh/libvirt 9.0 (collected on the test machine).
const CASES: ReadonlyArray<[string, string]> = [
  ["error: failed to get domain 'nosuch'\n", 'DOMAIN_NOT_FOUND'],
  ['error: Domain is already active\n', 'DOMAIN_RUNNING'],
  [
    "error: Failed to destroy domain 'x'\nerror: Requested operation is not valid: domain is not running\n",
    'DOMAIN_NOT_RUNNING',
  ],
  ['error: Operation not supported: cannot create checkpoint for inactive domain\n', 'DOMAIN_NOT_RUNNING'],
  [
    "error: Domain checkpoint not found: no domain checkpoint with matching name 'nosuch'\n",
    'CHECKPOINT_NOT_FOUND',
  ],
  ['error: operation failed: domain moment cp1 already exists\n', 'CHECKPOINT_EXISTS'],
  [
    'error: unsupported configuration: checkpoint for disk vdb unsupported for storage type raw\n',
    'CHECKPOINT_UNSUPPORTED',
  ],
  ['error: Domain backup job id not found: no domain backup job present\n', 'NO_BACKUP_JOB'],
  ['error: Requested operation is not valid: no job is active on the domain\n', 'NO_BACKUP_JOB'],
  [
    'error: Timed out during operation: cannot acquire state change lock (held by monitor=remoteDispatchDomainBackupBegin)\n',
    'BACKUP_JOB_ACTIVE',
  ],
  [
    'error: Timed out during operation: cannot acquire state change lock (held by monitor=remoteDispatchDomainGetXMLDesc)\n',
    'DOMAIN_BUSY',
  ],
  [
    "error: failed to connect to the hypervisor\nerror: Failed to connect socket to '/run/libvirt/libvirt-sock': No such file or directory\n",
    'LIBVIRT_UNREACHABLE',
  ],
  ['error: Guest agent is not responding: QEMU guest agent is not connected\n', 'GUEST_AGENT_UNAVAILABLE'],
  [
    "error: operation failed: domain 'a' already exists with uuid 08ca52a4-d874-4ca7-98e9-c95978b0bf97\n",
    'DOMAIN_EXISTS',
  ],
  ['error: XML error: missing element or attribute\n', 'INVALID_XML'],
  ['error: Requested operation is not valid: cannot undefine inactive domain\n', 'DOMAIN_NOT_RUNNING'],
  ['error: Requested operation is not valid: cannot do this on an active domain\n', 'DOMAIN_RUNNING'],
  ["error: Failed to open file 'x.xml': No such file or directory\n", 'VIRSH_FAILED'],
];

test('classifyVirshError maps libvirt messages to stable codes', () => {
  for (const [stderr, code] of CASES) assert.equal(classifyVirshError(stderr), code, stderr);
});

test('virshErrorText keeps every libvirt line without the error: prefixes', () => {
  assert.equal(
    virshErrorText(
      "error: Failed to destroy domain 'x'\nerror: Requested operation is not valid: domain is not running\n",
    ),
    "Failed to destroy domain 'x': Requested operation is not valid: domain is not running",
  );
  assert.equal(virshErrorText(''), 'virsh failed without a message');
});
