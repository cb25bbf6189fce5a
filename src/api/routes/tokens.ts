import { z } from 'zod';
import { recordAudit } from '../../catalog/audit.js';
import { isoPlus } from '../../catalog/time.js';
import { createToken, getToken, listTokens, revokeToken } from '../../catalog/tokens.js';
import { getUser } from '../../catalog/users.js';
import { apiActor } from '../audit-actor.js';
import { ApiError, notFound } from '../errors.js';
import { presentToken } from '../presenters.js';
import type { ApiRouter } from '../router.js';
import { idParams, listOf, nameSchema, newTokenOut, tokenOut } from '../schemas.js';

const DAY_MS = 86_400_000;

export function registerTokenRoutes(router: ApiRouter): void {
  router.add({
    method: 'GET',
    url: '/v1/tokens',
    summary: "The caller's tokens (admins: anyone's, with user_id)",
    tag: 'tokens',
    access: 'user',
    query: z.strictObject({ user_id: z.uuid().optional() }),
    response: listOf(tokenOut),
    handler: async ({ auth, query, services }) => {
      const userId = query.user_id ?? auth.user.id;
      if (userId !== auth.user.id && !auth.isAdmin) throw notFound('user', userId);
      return { items: (await listTokens(services.catalog, { userId })).map(presentToken) };
    },
  });

  router.add({
    method: 'POST',
    url: '/v1/tokens',
    summary: 'Create a token; the answer is the only time it is shown',
    tag: 'tokens',
    access: 'user',
    status: 201,
    body: z.strictObject({
      name: nameSchema,
      expires_in_days: z.number().int().min(1).max(3650).optional(),
      user_id: z.uuid().optional().describe('admins only: create the token for another user'),
    }),
    response: newTokenOut,
    handler: async ({ auth, body, services }) => {
      const userId = body.user_id ?? auth.user.id;
      if (userId !== auth.user.id) {
        if (!auth.isAdmin) throw new ApiError('FORBIDDEN', 'only admins create tokens for other users');
        await getUser(services.catalog, userId);
      }
      const expiresAt = body.expires_in_days ? isoPlus(body.expires_in_days * DAY_MS) : null;
      const { token, secret } = await createToken(services.catalog, { userId, name: body.name, expiresAt });
      await recordAudit(services.catalog, apiActor(auth), {
        action: 'token.create',
        resourceType: 'token',
        resourceId: token.id,
        details: { user_id: userId, name: token.name, expires_at: expiresAt },
      });
      return { ...presentToken(token), token: secret };
    },
  });

  router.add({
    method: 'DELETE',
    url: '/v1/tokens/:id',
    summary: 'Revoke a token (own, or any for admins)',
    tag: 'tokens',
    access: 'user',
    params: idParams,
    response: tokenOut,
    handler: async ({ auth, params, services }) => {
      const token = await getToken(services.catalog, params.id);
      if (token.user_id !== auth.user.id && !auth.isAdmin) throw notFound('token', params.id);
      const revoked = await revokeToken(services.catalog, params.id);
      await recordAudit(services.catalog, apiActor(auth), {
        action: 'token.revoke',
        resourceType: 'token',
        resourceId: token.id,
        details: { user_id: token.user_id, name: token.name },
      });
      return presentToken(revoked);
    },
  });
}
