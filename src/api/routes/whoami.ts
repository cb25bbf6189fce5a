import { z } from 'zod';
import { presentToken } from '../presenters.js';
import type { ApiRouter } from '../router.js';
import { tokenOut, userOut } from '../schemas.js';

export function registerWhoamiRoutes(router: ApiRouter): void {
  router.add({
    method: 'GET',
    url: '/v1/whoami',
    summary: 'The user and token behind this request',
    tag: 'identity',
    access: 'user',
    response: z.object({ user: userOut, token: tokenOut }),
    handler: async ({ auth }) => ({
      user: { ...auth.user, project_ids: auth.projectIds },
      token: presentToken(auth.token),
    }),
  });
}
