import { createHash, randomBytes } from 'node:crypto';
import type { Selectable } from 'kysely';
import { guardWrite, notFound } from './errors.js';
import { newId } from './ids.js';
import { assertValidName } from './names.js';
import type { ApiTokensTable, CatalogDb } from './schema.js';
import { type IsoTime, isoNow } from './time.js';
import type { User } from './users.js';

/** A token record: everything but the token itself, which is never stored. */
export type ApiToken = Selectable<ApiTokensTable>;

/** Tokens look like `lb_<43 base64url chars>`: 256 random bits, recognisable in logs and leak scanners. */
const TOKEN_PREFIX = 'lb_';
const SHOWN_PREFIX_LENGTH = TOKEN_PREFIX.length + 6;
/** last_used_at is a hint for people, not an exact log: write it at most this often per token. */
const LAST_USED_RESOLUTION_MS = 60_000;

export function generateTokenSecret(): string {
  return TOKEN_PREFIX + randomBytes(32).toString('base64url');
}

/** A fast hash is right here: the token is 256 random bits, so there is nothing to brute-force. */
export function hashToken(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

export async function createToken(
  db: CatalogDb,
  input: { userId: string; name: string; expiresAt?: IsoTime | null },
): Promise<{ token: ApiToken; secret: string }> {
  assertValidName('token', input.name);
  const secret = generateTokenSecret();
  const token: ApiToken = {
    id: newId(),
    user_id: input.userId,
    name: input.name,
    token_hash: hashToken(secret),
    token_prefix: secret.slice(0, SHOWN_PREFIX_LENGTH),
    created_at: isoNow(),
    expires_at: input.expiresAt ?? null,
    last_used_at: null,
    revoked_at: null,
  };
  await guardWrite('token', () => db.insertInto('api_tokens').values(token).execute());
  return { token, secret };
}

export async function getToken(db: CatalogDb, id: string): Promise<ApiToken> {
  const row = await db.selectFrom('api_tokens').selectAll().where('id', '=', id).executeTakeFirst();
  if (!row) throw notFound('token', id);
  return row;
}

export async function listTokens(db: CatalogDb, filter: { userId?: string } = {}): Promise<ApiToken[]> {
  let q = db.selectFrom('api_tokens').selectAll().orderBy('created_at').orderBy('id');
  if (filter.userId !== undefined) q = q.where('user_id', '=', filter.userId);
  return q.execute();
}

/** Revoking twice is harmless; the record stays (with revoked_at) so lists show what was revoked. */
export async function revokeToken(db: CatalogDb, id: string): Promise<ApiToken> {
  const now = isoNow();
  await db
    .updateTable('api_tokens')
    .set({ revoked_at: now })
    .where('id', '=', id)
    .where('revoked_at', 'is', null)
    .execute();
  return getToken(db, id);
}

/**
 * The user a bearer token stands for, or undefined when it is unknown, revoked or expired (callers
 * answer all three the same way, so a probe learns nothing).
 */
export async function authenticateToken(
  db: CatalogDb,
  secret: string,
  now: IsoTime = isoNow(),
): Promise<{ user: User; token: ApiToken } | undefined> {
  const row = await db
    .selectFrom('api_tokens as t')
    .innerJoin('users as u', 'u.id', 't.user_id')
    .selectAll('t')
    .select(['u.name as u_name', 'u.role as u_role', 'u.email as u_email', 'u.created_at as u_created_at'])
    .select('u.updated_at as u_updated_at')
    .where('t.token_hash', '=', hashToken(secret))
    .where('t.revoked_at', 'is', null)
    .where((eb) => eb.or([eb('t.expires_at', 'is', null), eb('t.expires_at', '>', now)]))
    .executeTakeFirst();
  if (!row) return undefined;
  const { u_name, u_role, u_email, u_created_at, u_updated_at, ...token } = row;
  const user: User = {
    id: token.user_id,
    name: u_name,
    role: u_role,
    email: u_email,
    created_at: u_created_at,
    updated_at: u_updated_at,
  };
  if (!token.last_used_at || Date.parse(now) - Date.parse(token.last_used_at) > LAST_USED_RESOLUTION_MS) {
    await db.updateTable('api_tokens').set({ last_used_at: now }).where('id', '=', token.id).execute();
    token.last_used_at = now;
  }
  return { user, token };
}
