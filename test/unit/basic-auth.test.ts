import path from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { BasicAuth, parseBasicAuth } from '../../src/web/basic-auth.js';
import { PasswordVerifier } from '../../src/web/password-verifier.js';
import { loadWebConfig } from '../../src/web/web-config-file.js';

const DIR = new URL('../fixtures/web-config/', import.meta.url).pathname;

describe('basic auth', () => {
  // users.good.yml: prometheus / s3cret (cost 10, $2y$ from htpasswd), alice / hunter2 (cost 4, $2b$).
  const users = loadWebConfig(path.join(DIR, 'users.good.yml')).users;
  const header = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
  const verifier = new PasswordVerifier(pino({ level: 'silent' }));
  afterAll(() => verifier.close());

  it('lets in the right password and nothing else', async () => {
    const auth = new BasicAuth(users, verifier);
    expect(auth.enabled).toBe(true);
    expect(await auth.check(header('prometheus', 's3cret'))).toBe('ok');
    expect(await auth.check(header('alice', 'hunter2'))).toBe('ok');
    expect(await auth.check(header('prometheus', 'hunter2'))).toBe('denied');
    expect(await auth.check(header('alice', 's3cret'))).toBe('denied');
    expect(await auth.check(header('mallory', 's3cret'))).toBe('denied');
    expect(await auth.check(header('Prometheus', 's3cret'))).toBe('denied');
    expect(await auth.check(header('prometheus', 's3cret '))).toBe('denied');
    expect(await auth.check(undefined)).toBe('denied');
    expect(await auth.check('Bearer abc')).toBe('denied');
    expect(await auth.check('Basic !!!')).toBe('denied');
    expect(await auth.check(`Basic ${Buffer.from('no-colon').toString('base64')}`)).toBe('denied');
    // Remembered results must not change the answer.
    expect(await auth.check(header('prometheus', 's3cret'))).toBe('ok');
    expect(await auth.check(header('mallory', 's3cret'))).toBe('denied');
    expect(new BasicAuth(new Map(), verifier).enabled).toBe(false);
  });

  it('spends a full bcrypt compare on unknown users, so timing does not reveal who exists', async () => {
    const auth = new BasicAuth(users, verifier);
    const timeOf = async (h: string): Promise<number> => {
      const started = performance.now();
      expect(await auth.check(h)).toBe('denied');
      return performance.now() - started;
    };
    // Fresh passwords each time: a remembered result would skip bcrypt.
    // Interleaved, and the fastest of each kept: other work on the machine only ever adds time.
    const known: number[] = [];
    const unknown: number[] = [];
    for (let i = 0; i < 3; i++) {
      known.push(await timeOf(header('prometheus', `wrong-${i}`)));
      unknown.push(await timeOf(header('nobody', `wrong-${i}`)));
    }
    const knownMs = Math.min(...known);
    const unknownMs = Math.min(...unknown);
    // Cost 10 takes tens of milliseconds; skipping the compare would take well under one.
    expect(knownMs).toBeGreaterThan(5);
    expect(unknownMs).toBeGreaterThan(knownMs * 0.5);
    expect(unknownMs).toBeLessThan(knownMs * 3);
  });

  it('parses Authorization headers', () => {
    expect(parseBasicAuth(`basic ${Buffer.from('u:p:with:colons').toString('base64')}`)).toEqual({ user: 'u', password: 'p:with:colons' });
    expect(parseBasicAuth(`Basic ${Buffer.from('ünï:cødé').toString('base64')}`)).toEqual({ user: 'ünï', password: 'cødé' });
    expect(parseBasicAuth(`Basic ${Buffer.from(':').toString('base64')}`)).toEqual({ user: '', password: '' });
    expect(parseBasicAuth('Basic')).toBeUndefined();
    expect(parseBasicAuth('Digest x')).toBeUndefined();
  });
});
