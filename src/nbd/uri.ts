import { NbdError } from './errors.js';
import type { NbdEndpoint } from './transport.js';

export const NBD_DEFAULT_PORT = 10809;

export interface NbdTarget {
  endpoint: NbdEndpoint;
  exportName: string;
}

/**
 * Parses the NBD URI forms QEMU and libnbd use: `nbd://host[:port]/export` (TCP, port 10809 by
 * default) and `nbd+unix:///export?socket=/path`. The export name is the URL-decoded path without
 * its leading slash (empty = the default export). TLS forms (`nbds://`) are refused: we do not do TLS.
 */
export function parseNbdUri(uri: string): NbdTarget {
  let u: URL;
  try {
    u = new URL(uri);
  } catch (err) {
    throw new NbdError('NBD_BAD_URI', `not a URI: ${uri}`, { cause: err });
  }
  const exportName = decodeExportName(u, uri);
  switch (u.protocol) {
    case 'nbd:':
    case 'nbd+tcp:': {
      if (!u.hostname) throw new NbdError('NBD_BAD_URI', `${uri}: no host`);
      const port = u.port === '' ? NBD_DEFAULT_PORT : Number(u.port);
      const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
      return { endpoint: { kind: 'tcp', host, port }, exportName };
    }
    case 'nbd+unix:': {
      if (u.hostname) throw new NbdError('NBD_BAD_URI', `${uri}: nbd+unix URIs take no host`);
      const socket = u.searchParams.get('socket');
      if (!socket) throw new NbdError('NBD_BAD_URI', `${uri}: missing ?socket=/path`);
      return { endpoint: { kind: 'unix', path: socket }, exportName };
    }
    case 'nbds:':
    case 'nbds+tcp:':
    case 'nbds+unix:':
      throw new NbdError('NBD_UNSUPPORTED', `${uri}: NBD over TLS is not supported`);
    default:
      throw new NbdError('NBD_BAD_URI', `${uri}: unknown scheme ${u.protocol.replace(/:$/, '')}`);
  }
}

function decodeExportName(u: URL, uri: string): string {
  const path = u.pathname.startsWith('/') ? u.pathname.slice(1) : u.pathname;
  try {
    return decodeURIComponent(path);
  } catch (err) {
    throw new NbdError('NBD_BAD_URI', `${uri}: bad percent-encoding in export name`, { cause: err });
  }
}

/** The URI for a target, inverse of parseNbdUri. */
export function formatNbdUri(target: NbdTarget): string {
  const name = encodeURIComponent(target.exportName);
  const e = target.endpoint;
  if (e.kind === 'unix') return `nbd+unix:///${name}?socket=${encodeURIComponent(e.path)}`;
  const host = e.host.includes(':') ? `[${e.host}]` : e.host;
  return `nbd://${host}:${e.port}/${name}`;
}
