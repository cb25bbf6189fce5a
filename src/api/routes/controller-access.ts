import type { ControllerContext } from '../../controller/context.js';
import { ApiError } from '../errors.js';
import type { ApiServices } from '../services.js';

/** The controller's domain services, when the API was built with them (`lifeboat serve` does). */
export function controllerOf(services: ApiServices): ControllerContext {
  const ctx = (services as ApiServices & { controller?: ControllerContext }).controller;
  if (!ctx) throw new ApiError('INTERNAL', 'this API was built without the controller services');
  return ctx;
}
