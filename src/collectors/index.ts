import type { CollectorModule } from './collector.js';
import { containersCollector } from './containers.js';
import { dfCollector } from './df.js';
import { engineCollector } from './engine.js';
import { eventsCollector } from './events.js';
import { logsCollector } from './logs.js';
import { statsCollector } from './stats.js';
import { swarmCollector } from './swarm.js';

/**
 * Every collector, in scrape order, which is also the order of their flags in `--help`. The CLI
 * hands this list to config, which makes each one's `--collector.<name>` switch and its own flags
 * from it. Adding one: write `collectors/<name>.ts` and list it here.
 */
export const COLLECTORS: readonly CollectorModule[] = [engineCollector, containersCollector, statsCollector, eventsCollector, dfCollector, logsCollector, swarmCollector];
