import path from 'node:path';
import type { TLSSocket } from 'node:tls';
import { describe, expect, it } from 'vitest';
import { checkClientCert } from '../../src/web/tls-config.js';
import { loadWebConfig } from '../../src/web/web-config-file.js';

const DIR = new URL('../fixtures/web-config/', import.meta.url).pathname;

describe('client certificates after the handshake (the modes Node cannot enforce in it)', () => {
  const tls = loadWebConfig(path.join(DIR, 'full.good.yml')).tls!;
  const socket = (cert: Record<string, unknown>, authorized: boolean): TLSSocket =>
    ({ getPeerCertificate: () => cert, authorized, authorizationError: authorized ? null : 'SELF_SIGNED_CERT' }) as unknown as TLSSocket;
  const signed = { subject: { CN: 'p' }, subjectaltname: 'DNS:prometheus.example.com, IP Address:10.0.0.9' };

  it('VerifyClientCertIfGiven: no certificate is fine, an untrusted one is not, a trusted one needs an allowed SAN', () => {
    expect(tls.clientAuth).toBe('VerifyClientCertIfGiven');
    expect(checkClientCert(tls, socket({}, false))).toBeUndefined();
    expect(checkClientCert(tls, socket(signed, false))).toBe('client certificate not trusted: SELF_SIGNED_CERT');
    expect(checkClientCert(tls, socket(signed, true))).toBeUndefined();
    expect(checkClientCert(tls, socket({ subjectaltname: 'IP Address:10.0.0.5' }, true))).toBeUndefined();
    expect(checkClientCert(tls, socket({ subjectaltname: 'DNS:other.example.com, email:prometheus.example.com.evil' }, true))).toBe(
      'client certificate SANs [other.example.com, prometheus.example.com.evil] are not in client_allowed_sans',
    );
    expect(checkClientCert(tls, socket({ subject: { CN: 'prometheus.example.com' } }, true))).toContain('are not in client_allowed_sans');
  });

  it('RequireAnyClientCert wants a certificate, trusted or not; RequestClientCert and NoClientCert let anyone in', () => {
    expect(checkClientCert({ ...tls, clientAuth: 'RequireAnyClientCert', clientAllowedSans: undefined }, socket({}, false))).toBe('no client certificate');
    expect(checkClientCert({ ...tls, clientAuth: 'RequireAnyClientCert', clientAllowedSans: undefined }, socket(signed, false))).toBeUndefined();
    expect(checkClientCert({ ...tls, clientAuth: 'RequestClientCert' }, socket({}, false))).toBeUndefined();
    expect(checkClientCert({ ...tls, clientAuth: 'NoClientCert' }, socket({}, false))).toBeUndefined();
  });
});
