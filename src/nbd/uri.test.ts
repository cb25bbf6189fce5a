import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NbdError } from './errors.js';
import { formatNbdUri, parseNbdUri } from './uri.js';

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof NbdError ? err.code : 'not-nbd';
  }
  return undefined;
}

test('nbd:// URIs: host, port (default 10809), export name decoded', () => {
  assert.deepEqual(parseNbdUri('nbd://127.0.0.1:10810/disk0'), {
    endpoint: { kind: 'tcp', host: '127.0.0.1', port: 10810 },
    exportName: 'disk0',
  });
  assert.deepEqual(parseNbdUri('nbd://example.org/a%20b'), {
    endpoint: { kind: 'tcp', host: 'example.org', port: 10809 },
    exportName: 'a b',
  });
  assert.deepEqual(parseNbdUri('nbd://[::1]:99/'), {
    endpoint: { kind: 'tcp', host: '::1', port: 99 },
    exportName: '',
  });
});

test('nbd+unix:// URIs take the socket from the query', () => {
  assert.deepEqual(parseNbdUri('nbd+unix:///vda?socket=/run/x/backup.sock'), {
    endpoint: { kind: 'unix', path: '/run/x/backup.sock' },
    exportName: 'vda',
  });
  assert.deepEqual(parseNbdUri('nbd+unix://?socket=/s'), {
    endpoint: { kind: 'unix', path: '/s' },
    exportName: '',
  });
});

test('bad URIs are typed errors', () => {
  assert.equal(
    code(() => parseNbdUri('not a uri')),
    'NBD_BAD_URI',
  );
  assert.equal(
    code(() => parseNbdUri('http://x/y')),
    'NBD_BAD_URI',
  );
  assert.equal(
    code(() => parseNbdUri('nbd+unix:///x')),
    'NBD_BAD_URI',
  );
  assert.equal(
    code(() => parseNbdUri('nbd+unix://host/x?socket=/s')),
    'NBD_BAD_URI',
  );
  assert.equal(
    code(() => parseNbdUri('nbds://h/x')),
    'NBD_UNSUPPORTED',
  );
  assert.equal(
    code(() => parseNbdUri('nbd:///x')),
    'NBD_BAD_URI',
  );
});

test('formatNbdUri round-trips', () => {
  for (const uri of [
    'nbd://127.0.0.1:10810/disk%200',
    'nbd+unix:///vda?socket=%2Ftmp%2Fs.sock',
    'nbd://[::1]:10809/x',
  ]) {
    assert.deepEqual(parseNbdUri(formatNbdUri(parseNbdUri(uri))), parseNbdUri(uri));
  }
});
