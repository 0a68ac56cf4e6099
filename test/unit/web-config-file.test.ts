import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config.js';
import { loadWebConfig, WebConfigError, type WebConfig } from '../../src/web/web-config-file.js';

const DIR = new URL('../fixtures/web-config/', import.meta.url).pathname;
const fixtures = fs.readdirSync(DIR).filter((f) => f.endsWith('.yml')).sort();

/** What each good fixture must load as; every *.good.yml needs an entry, so none goes unchecked. */
const GOOD: Record<string, (c: WebConfig) => void> = {
  'empty.good.yml': (c) => {
    expect(c.tls).toBeUndefined();
    expect(c.users.size).toBe(0);
    expect(c.headers).toEqual({});
    expect(c.rateLimit).toBeUndefined();
  },
  'tls.good.yml': (c) => {
    expect(c.tls).toMatchObject({ clientAuth: 'NoClientCert', minVersion: 'TLSv1.2', maxVersion: 'TLSv1.3', honorCipherOrder: true });
    expect(c.tls!.cert.equals(fs.readFileSync(path.join(DIR, 'server.crt')))).toBe(true);
    expect(c.files).toEqual([path.join(DIR, 'tls.good.yml'), path.join(DIR, 'server.crt'), path.join(DIR, 'server.key')]);
  },
  'tls-client-auth.good.yml': (c) => {
    expect(c.tls).toMatchObject({ clientAuth: 'RequireAndVerifyClientCert', minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' });
    expect(c.tls!.clientCa!.equals(fs.readFileSync(path.join(DIR, 'client-ca.crt')))).toBe(true);
    expect(c.files).toContain(path.join(DIR, 'client-ca.crt'));
  },
  'tls-inline.good.yml': (c) => {
    expect(c.tls!.cert.toString()).toBe(fs.readFileSync(path.join(DIR, 'server.crt'), 'utf8'));
    expect(c.tls!.key.toString()).toBe(fs.readFileSync(path.join(DIR, 'server.key'), 'utf8'));
    expect(c.files).toEqual([path.join(DIR, 'tls-inline.good.yml')]);
  },
  'users.good.yml': (c) => {
    expect(c.tls).toBeUndefined();
    expect([...c.users.keys()]).toEqual(['prometheus', 'alice']);
  },
  'headers.good.yml': (c) => {
    expect(c.headers).toEqual({
      'Strict-Transport-Security': 'max-age=31536000; includeSubDomains',
      'X-Content-Type-Options': 'nosniff',
      'X-Frame-Options': 'deny',
      'X-XSS-Protection': '1; mode=block',
      'Content-Security-Policy': "default-src 'self'",
    });
  },
  'full.good.yml': (c) => {
    expect(c.tls).toMatchObject({
      clientAuth: 'VerifyClientCertIfGiven',
      clientAllowedSans: ['prometheus.example.com', '10.0.0.5'],
      ciphers: 'ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384',
      ecdhCurve: 'X25519:prime256v1',
      honorCipherOrder: false,
    });
    expect(c.headers).toEqual({ 'X-Frame-Options': 'sameorigin' });
    expect(c.users.size).toBe(1);
    expect(c.rateLimit).toEqual({ intervalMs: 100, burst: 20 });
  },
};

describe('web config files (exporter-toolkit format)', () => {
  it('has an expectation for every good fixture and a stated error for every bad one', () => {
    const good = fixtures.filter((f) => f.endsWith('.good.yml'));
    const bad = fixtures.filter((f) => f.endsWith('.bad.yml'));
    expect(good.sort()).toEqual(Object.keys(GOOD).sort());
    expect(bad.length).toBeGreaterThanOrEqual(25);
    for (const f of bad) expect(fs.readFileSync(path.join(DIR, f), 'utf8')).toMatch(/^# expect: .+\n/);
  });

  for (const file of fixtures.filter((f) => f.endsWith('.good.yml'))) {
    it(`loads ${file}`, () => {
      const config = loadWebConfig(path.join(DIR, file));
      GOOD[file]!(config);
    });
  }

  for (const file of fixtures.filter((f) => f.endsWith('.bad.yml'))) {
    it(`rejects ${file} with a one-line error naming the file and the key`, () => {
      const full = path.join(DIR, file);
      const expected = /^# expect: (.+)\n/.exec(fs.readFileSync(full, 'utf8'))![1]!;
      let error: unknown;
      try {
        loadWebConfig(full);
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(WebConfigError);
      // A ConfigError is what the CLI turns into exit status 2.
      expect(error).toBeInstanceOf(ConfigError);
      const message = (error as Error).message;
      expect(message.startsWith(`--web.config.file ${full}: `)).toBe(true);
      expect(message).toContain(expected);
      expect(message).not.toContain('\n');
    });
  }

  it('names a missing file', () => {
    expect(() => loadWebConfig('/nonexistent/web.yml')).toThrow('--web.config.file /nonexistent/web.yml: cannot read it: ENOENT');
  });
});
