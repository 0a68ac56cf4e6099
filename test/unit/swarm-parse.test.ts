import { describe, expect, it } from 'vitest';
import { PayloadError } from '../../src/parse/guards.js';
import { isActiveManager, parseNodes, parseServices, parseSwarmMembership, parseTasks, serviceFigures, type SwarmService, type SwarmTask } from '../../src/parse/swarm.js';

const svc = (over: Partial<SwarmService>): SwarmService => ({ id: 's1', name: 'x', mode: 'replicated', stack: '', ...over });
const task = (desiredState: string, state: string, nodeId = 'n1'): SwarmTask => ({ serviceId: 's1', nodeId, desiredState, state });

describe('swarm parsers', () => {
  it('reads /info\'s Swarm member; none (or null) is "not in a swarm"', () => {
    expect(parseSwarmMembership({ Swarm: { LocalNodeState: 'active', ControlAvailable: true, NodeID: 'abc' } })).toEqual({ state: 'active', manager: true, nodeId: 'abc' });
    expect(parseSwarmMembership({ ServerVersion: '4.9' })).toEqual({ state: '', manager: false, nodeId: '' });
    expect(parseSwarmMembership({ Swarm: null })).toEqual({ state: '', manager: false, nodeId: '' });
    expect(() => parseSwarmMembership([])).toThrow(PayloadError);
    expect(() => parseSwarmMembership({ Swarm: 'active' })).toThrow(PayloadError);
    // A locked or pending manager answers the swarm routes with 503: not an active manager.
    expect(isActiveManager({ state: 'locked', manager: true, nodeId: 'abc' })).toBe(false);
    expect(isActiveManager({ state: 'active', manager: true, nodeId: '' })).toBe(false);
  });

  it('names modes as `docker service create --mode` does, and a future one in kebab case', () => {
    const list = ['Replicated', 'Global', 'ReplicatedJob', 'GlobalJob', 'SomeFutureMode'].map((k, n) => ({ ID: `s${n}`, Spec: { Name: k, Mode: { [k]: {} } } }));
    expect(parseServices(list).map((s) => s.mode)).toEqual(['replicated', 'global', 'replicated-job', 'global-job', 'some-future-mode']);
  });

  it('refuses a service without a mode, an item without an ID, a list that is not one', () => {
    expect(() => parseServices([{ ID: 'a', Spec: { Name: 'x', Mode: {} } }])).toThrow('has no Spec.Mode');
    expect(() => parseServices([{ Spec: {} }])).toThrow('an object without an ID');
    expect(() => parseNodes({})).toThrow('not a list');
    expect(() => parseTasks(null)).toThrow('not a list');
  });

  it('reads wrong-typed node fields as empty labels, a worker as not leading', () => {
    expect(parseNodes([{ ID: 'n', Spec: { Role: 7 }, Description: { Hostname: 'h' } }])).toEqual([{ id: 'n', hostname: 'h', role: '', availability: '', state: '', leader: false }]);
  });

  it('drops a negative or fractional ServiceStatus (not a count) and counts from the tasks instead', () => {
    const [s] = parseServices([{ ID: 's1', Spec: { Mode: { Replicated: { Replicas: 2 } } }, ServiceStatus: { RunningTasks: -1, DesiredTasks: 2 } }]);
    expect(s!.status).toBeUndefined();
    expect(serviceFigures([s!], [task('running', 'running'), task('running', 'pending'), task('shutdown', 'running')], [])).toEqual([
      { service: s, desired: 2, running: 1, tasks: { running: 1, pending: 1 } },
    ]);
  });

  it('a replicated job\'s desired: min(MaxConcurrent, TotalCompletions − completed), with the API\'s defaults', () => {
    const figures = (over: Partial<SwarmService>, tasks: SwarmTask[] = []) => serviceFigures([svc({ mode: 'replicated-job', ...over })], tasks, [])[0]!.desired;
    expect(figures({ maxConcurrent: 3, totalCompletions: 10, status: { running: 3, desired: 3, completed: 8 } })).toBe(2);
    expect(figures({ maxConcurrent: 3, totalCompletions: 10, status: { running: 0, desired: 1, completed: 10 } })).toBe(0);
    // Neither given: MaxConcurrent 1 and TotalCompletions = MaxConcurrent.
    expect(figures({}, [task('complete', 'running')])).toBe(1);
    expect(figures({}, [task('complete', 'complete')])).toBe(0);
  });

  it('a global job\'s desired: its current tasks not yet complete', () => {
    const [f] = serviceFigures([svc({ mode: 'global-job' })], [task('complete', 'complete'), task('complete', 'running'), task('complete', 'starting'), task('shutdown', 'failed')], []);
    expect(f).toMatchObject({ desired: 2, tasks: { complete: 1, running: 1, starting: 1 } });
  });
});
