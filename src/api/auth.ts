import { isUuid } from '../catalog/ids.js';
import type { ProjectScope } from '../catalog/page.js';
import { projectIdsOfUser } from '../catalog/projects.js';
import type { CatalogDb } from '../catalog/schema.js';
import { type ApiToken, authenticateToken } from '../catalog/tokens.js';
import type { User } from '../catalog/users.js';
import { ApiError, notFound } from './errors.js';

/** The caller of an authenticated route. */
export interface AuthContext {
  user: User;
  token: ApiToken;
  isAdmin: boolean;
  /** Projects the user is a member of. */
  projectIds: string[];
  /** What the user may see: null (admin: everything) or their projects. */
  scope: ProjectScope;
}

/**
 * Resolves `Authorization: Bearer <token>`. Missing, malformed, unknown, revoked and expired tokens
 * all get the same 401 (apart from the first, which says what is missing), so probing learns nothing.
 */
export async function authenticate(catalog: CatalogDb, header: string | undefined): Promise<AuthContext> {
  if (!header) throw new ApiError('UNAUTHORIZED', 'missing Authorization: Bearer <token> header');
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!match) throw new ApiError('UNAUTHORIZED', 'the Authorization header must be "Bearer <token>"');
  const found = await authenticateToken(catalog, match[1]);
  if (!found) throw new ApiError('UNAUTHORIZED', 'invalid, revoked or expired token');
  const isAdmin = found.user.role === 'admin';
  const projectIds = await projectIdsOfUser(catalog, found.user.id);
  return { user: found.user, token: found.token, isAdmin, projectIds, scope: isAdmin ? null : projectIds };
}

/**
 * Lets the caller at a project's resources, or answers 404 as if it did not exist: a member of one
 * project must not learn what another project holds. Resources outside any project (null) are the
 * admins'.
 */
export function assertProjectVisible(
  auth: AuthContext,
  projectId: string | null,
  what: string,
  id: string,
): void {
  if (auth.isAdmin) return;
  if (projectId !== null && auth.projectIds.includes(projectId)) return;
  throw notFound(what, id);
}

/** A project id given as a filter: unknown-to-the-caller projects are 404, not an empty list. */
export function assertProjectFilter(auth: AuthContext, projectId: string): void {
  if (!isUuid(projectId)) throw notFound('project', projectId);
  assertProjectVisible(auth, projectId, 'project', projectId);
}
