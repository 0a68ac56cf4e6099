import type { CollectorModule } from './collector.js';
import { engineCollector } from './engine.js';

/** Every collector, in scrape order. Adding one: write `collectors/<name>.ts` and list it here. */
export const COLLECTORS: readonly CollectorModule[] = [engineCollector];
