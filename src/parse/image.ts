import { obj, PayloadError, str, typeName } from './guards.js';

/** The image id in `GET /images/{name}/json`; PayloadError for anything else. */
export function parseImageId(payload: unknown): string {
  const id = str(obj(payload)?.Id);
  if (!id) throw new PayloadError(`image inspect is ${typeName(payload)} without an Id`);
  return id;
}
