import { openBackend } from '../../target/open-target.js';
import { Target } from '../../target/target.js';

/**
 * Where a datamover finds a backup target, as the controller puts it in a task payload: location,
 * safe settings and the credentials the datamover needs (it has no catalog of its own).
 */
export interface TargetLocator {
  id: string;
  kind: 'fs' | 's3';
  url: string;
  settings: Record<string, unknown>;
  secrets: Record<string, string>;
}

/** Opens a target from its locator; an empty directory or bucket is initialized. */
export async function openLocator(loc: Pick<TargetLocator, 'url' | 'settings' | 'secrets'>): Promise<Target> {
  const s = loc.settings as { endpoint?: string; region?: string };
  const backend = await openBackend(loc.url, {
    endpoint: s.endpoint,
    region: s.region,
    accessKeyId: loc.secrets?.accessKeyId,
    secretAccessKey: loc.secrets?.secretAccessKey,
    create: true,
  });
  return Target.init(backend);
}
