import { arr, bool, num, obj, PayloadError, str, typeName, type Json } from './guards.js';

/** The rows of `docker system df`, as the `kind` label spells them. */
export const DISK_USAGE_KINDS = ['images', 'containers', 'volumes', 'build_cache'] as const;
/** One of DISK_USAGE_KINDS. */
export type DiskUsageKind = (typeof DISK_USAGE_KINDS)[number];

/** One row of `docker system df`: the TOTAL, ACTIVE, SIZE and RECLAIMABLE columns, in objects and bytes. */
export interface KindUsage {
  total: number;
  active: number;
  size: number;
  reclaimable: number;
}

/** A container's sizes; a field is absent when the engine gave no usable number. */
export interface ContainerSizes {
  sizeRw?: number;
  sizeRootFs?: number;
}

/** A volume's usage; size and refCount are absent where the engine reports -1 (not computed). */
export interface VolumeUsage {
  name: string;
  driver: string;
  size?: number;
  refCount?: number;
}

/** What the exporter keeps of `GET /system/df`. */
export interface DiskUsage {
  /** Which response shape the figures came from. */
  shape: 'classic' | 'v1.52';
  /** Per row; a kind is absent when the engine did not compute it (API 1.52+ leaves its `*Usage` out). */
  kinds: Partial<Record<DiskUsageKind, KindUsage>>;
  /** By full 64-hex container id. */
  containers: Record<string, ContainerSizes>;
  volumes: VolumeUsage[];
}

/** The API 1.52+ member of each kind. */
const USAGE_KEYS: Record<DiskUsageKind, string> = {
  images: 'ImageUsage',
  containers: 'ContainerUsage',
  volumes: 'VolumeUsage',
  build_cache: 'BuildCacheUsage',
};

/** The classic (API < 1.52) member of each kind. */
const LEGACY_KEYS: Record<DiskUsageKind, string> = {
  images: 'Images',
  containers: 'Containers',
  volumes: 'Volumes',
  build_cache: 'BuildCache',
};

/** States the CLI counts as ACTIVE: the writable layer of these cannot be pruned. */
const ACTIVE_STATES = new Set(['running', 'paused', 'restarting']);

/**
 * The rows of `docker system df` plus per-container and per-volume sizes, from either shape.
 * API 1.52+ engines compute the rows themselves and the CLI prints them unchanged, so they are
 * taken as sent. For older engines the CLI derives the rows from the object lists; docker/cli 28's
 * rules are followed (https://github.com/docker/cli/blob/v28.5.2/cli/command/formatter/disk_usage.go):
 * CLI 29 derives images RECLAIMABLE otherwise. Throws PayloadError for a payload of neither shape or
 * with a list or total of the wrong type: figures from part of a payload would be wrong, not partial.
 */
export function parseDiskUsage(payload: unknown): DiskUsage {
  const p = obj(payload);
  if (!p || payload instanceof Uint8Array) throw new PayloadError(`system df payload is ${typeName(payload)}, not an object`);
  const modern = DISK_USAGE_KINDS.some((k) => p[USAGE_KEYS[k]] !== undefined && p[USAGE_KEYS[k]] !== null);
  const classic = 'LayersSize' in p || DISK_USAGE_KINDS.some((k) => LEGACY_KEYS[k] in p);
  if (!modern && !classic) throw new PayloadError('system df payload has neither the classic nor the API 1.52 members');

  const lists = {} as Record<DiskUsageKind, Json[] | undefined>;
  const kinds: Partial<Record<DiskUsageKind, KindUsage>> = {};
  for (const kind of DISK_USAGE_KINDS) {
    if (modern) {
      const usage = usageOf(p, kind);
      if (!usage) {
        lists[kind] = undefined;
        continue;
      }
      const key = USAGE_KEYS[kind];
      kinds[kind] = {
        total: total(usage.TotalCount, `${key}.TotalCount`),
        active: total(usage.ActiveCount, `${key}.ActiveCount`),
        size: total(usage.TotalSize, `${key}.TotalSize`),
        reclaimable: total(usage.Reclaimable, `${key}.Reclaimable`),
      };
      // Items come only with verbose=1, or alongside the legacy lists when verbose is not given.
      lists[kind] = 'Items' in usage ? listOf(usage.Items, `${USAGE_KEYS[kind]}.Items`) : listOf(p[LEGACY_KEYS[kind]], LEGACY_KEYS[kind]);
    } else {
      // Old engines send null for an empty list (a nil Go slice); the CLI reads that as no objects.
      lists[kind] = listOf(p[LEGACY_KEYS[kind]], LEGACY_KEYS[kind]) ?? [];
    }
  }
  if (!modern) {
    kinds.images = classicImages(lists.images ?? [], total(p.LayersSize, 'LayersSize'));
    kinds.containers = classicContainers(lists.containers ?? []);
    kinds.volumes = classicVolumes(lists.volumes ?? []);
    kinds.build_cache = classicBuildCache(lists.build_cache ?? []);
  }

  return {
    shape: modern ? 'v1.52' : 'classic',
    kinds,
    containers: containerSizes(lists.containers ?? []),
    volumes: volumeUsages(lists.volumes ?? []),
  };
}

function usageOf(p: Json, kind: DiskUsageKind): Json | undefined {
  const raw = p[USAGE_KEYS[kind]];
  if (raw === undefined || raw === null) return undefined;
  const usage = obj(raw);
  if (!usage) throw new PayloadError(`system df ${USAGE_KEYS[kind]} is not an object`);
  return usage;
}

/** A list member: undefined when absent or null, every element an object, else PayloadError. */
function listOf(raw: unknown, what: string): Json[] | undefined {
  if (raw === undefined || raw === null) return undefined;
  const list = arr(raw);
  if (!list) throw new PayloadError(`system df ${what} is not an array`);
  return list.map((item, i) => {
    const o = obj(item);
    if (!o) throw new PayloadError(`system df ${what}[${i}] is not an object`);
    return o;
  });
}

/** A figure printed as it is: absent means zero (the engine omits zeros), any other type is unusable. */
function total(value: unknown, what: string): number {
  if (value === undefined || value === null) return 0;
  const v = num(value);
  if (v === undefined) throw new PayloadError(`system df ${what} is not a number`);
  return v;
}

/** A number where Go would decode a missing field as zero. */
function n(value: unknown): number {
  return num(value) ?? 0;
}

/**
 * SIZE is LayersSize (each layer once, however many images share it). RECLAIMABLE is LayersSize
 * less the unique size of every image with containers: layers an in-use image shares with others
 * therefore count as reclaimable, which is how the CLI has always shown it.
 */
function classicImages(images: Json[], layersSize: number): KindUsage {
  let active = 0;
  let used = 0;
  for (const image of images) {
    const containers = n(image.Containers);
    // ACTIVE wants containers > 0 but "in use" below is != 0: -1 (not counted) is in use, not active.
    if (containers > 0) active++;
    const size = n(image.Size);
    const shared = n(image.SharedSize);
    if (containers !== 0 && size !== -1 && shared !== -1) used += size - shared;
  }
  // Podman (4.3 at least) sends LayersSize 0 whatever it stores, which no Docker engine can (its
  // layers hold at least every image's own; the CLI prints SIZE 0B and a negative RECLAIMABLE).
  // There both figures are taken as `podman system df` computes them: the images' sizes summed,
  // and reclaimable what the images without containers add up to.
  const sizes = images.map((image) => Math.max(0, n(image.Size)));
  const sum = sizes.reduce((a, b) => a + b, 0);
  if (layersSize === 0 && sum > 0) {
    const unused = images.reduce((acc, image, i) => acc + (n(image.Containers) === 0 ? sizes[i]! : 0), 0);
    return { total: images.length, active, size: sum, reclaimable: unused };
  }
  return { total: images.length, active, size: layersSize, reclaimable: layersSize - used };
}

function classicContainers(containers: Json[]): KindUsage {
  let active = 0;
  let size = 0;
  let reclaimable = 0;
  for (const c of containers) {
    const rw = n(c.SizeRw);
    size += rw;
    if (ACTIVE_STATES.has(str(c.State) ?? '')) active++;
    else reclaimable += rw;
  }
  return { total: containers.length, active, size, reclaimable };
}

/** -1 means "not computed" (a volume of another driver); such a size counts nowhere. */
function classicVolumes(volumes: Json[]): KindUsage {
  let active = 0;
  let size = 0;
  let reclaimable = 0;
  for (const v of volumes) {
    // The CLI dereferences UsageData unchecked; without it there is nothing to count, as for -1.
    const usage = obj(v.UsageData);
    const refCount = usage ? n(usage.RefCount) : -1;
    const bytes = usage ? n(usage.Size) : -1;
    if (refCount > 0) active++;
    if (bytes !== -1) {
      size += bytes;
      if (refCount === 0) reclaimable += bytes;
    }
  }
  return { total: volumes.length, active, size, reclaimable };
}

/**
 * The CLI ignores the engine's BuilderSize and sums the records not shared with images (a shared
 * record's bytes are already in an image's layers); RECLAIMABLE leaves out what is in use.
 */
function classicBuildCache(records: Json[]): KindUsage {
  let active = 0;
  let size = 0;
  let inUse = 0;
  for (const r of records) {
    const shared = bool(r.Shared) ?? false;
    const busy = bool(r.InUse) ?? false;
    const bytes = n(r.Size);
    if (!shared) size += bytes;
    if (busy) {
      active++;
      if (!shared) inUse += bytes;
    }
  }
  return { total: records.length, active, size, reclaimable: size - inUse };
}

/** A size the engine reports; negative (-1) or missing-typed means not available. */
function usable(value: unknown): number | undefined {
  const v = num(value);
  return v !== undefined && v >= 0 ? v : undefined;
}

function containerSizes(containers: Json[]): Record<string, ContainerSizes> {
  const out: Record<string, ContainerSizes> = {};
  for (const c of containers) {
    const id = str(c.Id);
    if (!id || !/^[0-9a-f]{64}$/.test(id)) continue;
    const sizes: ContainerSizes = {};
    // The engine computed sizes for every listed container and omits zeros (Go omitempty):
    // absent is 0, a wrong type is unknown.
    const rw = 'SizeRw' in c ? usable(c.SizeRw) : 0;
    const rootFs = 'SizeRootFs' in c ? usable(c.SizeRootFs) : 0;
    if (rw !== undefined) sizes.sizeRw = rw;
    if (rootFs !== undefined) sizes.sizeRootFs = rootFs;
    out[id] = sizes;
  }
  return out;
}

function volumeUsages(volumes: Json[]): VolumeUsage[] {
  const out: VolumeUsage[] = [];
  for (const v of volumes) {
    const name = str(v.Name);
    if (!name) continue;
    const usage = obj(v.UsageData);
    const volume: VolumeUsage = { name, driver: str(v.Driver) ?? '' };
    const size = usable(usage?.Size);
    const refCount = usable(usage?.RefCount);
    if (size !== undefined) volume.size = size;
    if (refCount !== undefined) volume.refCount = refCount;
    out.push(volume);
  }
  return out;
}
