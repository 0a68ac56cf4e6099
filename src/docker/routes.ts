/**
 * The engine routes the exporter uses, by the name callers give (`docker.get('inspect', { id })`):
 * each with its path template, which is also the `endpoint` label of the request metrics (never a
 * raw path), whether its reply is JSON (all but `/_ping`, which answers "OK"), and the `source`
 * under which a reply that is not counts as a parse error.
 */
export const ROUTES = {
  ping: { template: '/_ping', json: false, source: 'ping' },
  version: { template: '/version', json: true, source: 'version' },
  info: { template: '/info', json: true, source: 'info' },
  containers: { template: '/containers/json', json: true, source: 'containers' },
  inspect: { template: '/containers/{id}/json', json: true, source: 'inspect' },
  /** An image by reference or id: what a reference resolves to locally (inventory/image-refs.ts). */
  image: { template: '/images/{name}/json', json: true, source: 'image' },
  stats: { template: '/containers/{id}/stats', json: true, source: 'stats' },
  events: { template: '/events', json: true, source: 'events' },
  df: { template: '/system/df', json: true, source: 'df' },
  nodes: { template: '/nodes', json: true, source: 'nodes' },
  services: { template: '/services', json: true, source: 'services' },
  tasks: { template: '/tasks', json: true, source: 'tasks' },
} as const;

export type RouteName = keyof typeof ROUTES;

/** A route's path template, as the request metrics label it. */
export type Route = (typeof ROUTES)[RouteName]['template'];

/** The path of `name` for container `id`, or image reference (for the routes that take one). */
export function routePath(name: RouteName, id?: string): string {
  const { template } = ROUTES[name];
  const param = /\{(id|name)\}/.exec(template);
  if (!param) return template;
  if (!id) throw new Error(`${template} needs a ${param[1] === 'id' ? 'container id' : 'name'}`);
  // Encoded whole (a reference's / and : included): the engine decodes the path before routing.
  return template.replace(param[0], encodeURIComponent(id));
}
