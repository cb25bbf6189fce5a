import type { AuditActor } from '../catalog/audit.js';
import type { AuthContext } from './auth.js';

export function apiActor(auth: AuthContext): AuditActor {
  return { userId: auth.user.id, name: auth.user.name, source: 'api' };
}
