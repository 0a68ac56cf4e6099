import { describe, expect, it } from 'vitest';
import { compareApiVersions, negotiateApiVersion, NEWEST_KNOWN_API } from '../../src/docker/client.js';
import { modemOptions } from '../../src/docker/connection.js';

describe('API version negotiation', () => {
  it('pins min(engine maximum, newest known)', () => {
    expect(negotiateApiVersion('1.41')).toBe('1.41');
    expect(negotiateApiVersion('1.45')).toBe('1.45');
    expect(negotiateApiVersion(NEWEST_KNOWN_API)).toBe(NEWEST_KNOWN_API);
    expect(negotiateApiVersion('1.99')).toBe(NEWEST_KNOWN_API);
    expect(negotiateApiVersion('2.0')).toBe(NEWEST_KNOWN_API);
  });
  it('compares numerically, not as text', () => {
    expect(compareApiVersions('1.9', '1.41')).toBeLessThan(0);
    expect(compareApiVersions('1.41', '1.41')).toBe(0);
    expect(compareApiVersions('1.52', '1.100')).toBeLessThan(0);
  });
});

describe('modemOptions', () => {
  const base = { tlsVerify: false, certPath: '/nonexistent', timeoutMs: 1000, maxResponseBytes: 1 << 20 };
  it('uses the socket path of unix:// and nothing from the environment', () => {
    const o = modemOptions({ ...base, host: 'unix:///run/docker.sock' }) as Record<string, unknown>;
    expect(o.socketPath).toBe('/run/docker.sock');
    expect(o.host).toBeUndefined();
    expect('host' in o).toBe(true);
  });
  it('uses plain http on tcp:// without TLS, with the default port', () => {
    expect(modemOptions({ ...base, host: 'tcp://10.0.0.1' })).toMatchObject({ host: '10.0.0.1', port: '2375', protocol: 'http' });
  });
  it('names the missing file when TLS material cannot be read', () => {
    expect(() => modemOptions({ ...base, host: 'tcp://h:2376', tlsVerify: true })).toThrow('--docker.cert-path: cannot read /nonexistent/ca.pem: ENOENT');
  });
});
