export { type AuthContext, assertProjectVisible } from './auth.js';
export { ApiError, type ApiErrorCode, type ErrorBody, httpStatusOf } from './errors.js';
export { ApiRouter, type RouteAccess, type RouteCall, type RouteSpec } from './router.js';
export { buildApi } from './server.js';
export type { ApiServices } from './services.js';
