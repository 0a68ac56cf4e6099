import type tls from 'node:tls';

/** The client_auth_type values: Go's tls.ClientAuthType names, as toolkit takes them. */
export const CLIENT_AUTH_TYPES = [
  'NoClientCert',
  'RequestClientCert',
  'RequireAnyClientCert',
  'VerifyClientCertIfGiven',
  'RequireAndVerifyClientCert',
] as const;
export type ClientAuthType = (typeof CLIENT_AUTH_TYPES)[number];

/** Client-certificate modes that turn away a client without a certificate. */
export const REQUIRES_CERT: readonly ClientAuthType[] = ['RequireAnyClientCert', 'RequireAndVerifyClientCert'];
/** Client-certificate modes that check a certificate against client_ca_file. */
export const VERIFIES_CERT: readonly ClientAuthType[] = ['VerifyClientCertIfGiven', 'RequireAndVerifyClientCert'];

/** What the HTTPS server is built from (paths already resolved and files read). */
export interface TlsSettings {
  cert: Buffer;
  key: Buffer;
  clientCa?: Buffer;
  clientAuth: ClientAuthType;
  minVersion: tls.SecureVersion;
  maxVersion: tls.SecureVersion;
  /** OpenSSL cipher list, when the file restricts it. */
  ciphers?: string;
  ecdhCurve?: string;
  honorCipherOrder: boolean;
  /** A client certificate must carry one of these SANs (DNS, e-mail, IP or URI), when set. */
  clientAllowedSans?: string[];
}

/** The options for `tls.createSecureContext` / `https.createServer` from the TLS settings. */
export function secureContextOptions(t: TlsSettings): tls.SecureContextOptions {
  return {
    cert: t.cert,
    key: t.key,
    ca: t.clientCa,
    minVersion: t.minVersion,
    maxVersion: t.maxVersion,
    ciphers: t.ciphers,
    ecdhCurve: t.ecdhCurve,
    honorCipherOrder: t.honorCipherOrder,
  };
}

/** How the TLS server asks for client certificates; the rest of client_auth_type is checked after the handshake. */
export function clientCertOptions(t: TlsSettings): { requestCert: boolean; rejectUnauthorized: boolean } {
  return {
    requestCert: t.clientAuth !== 'NoClientCert',
    // Only this mode fails the handshake itself; the optional modes are checked by checkClientCert.
    rejectUnauthorized: t.clientAuth === 'RequireAndVerifyClientCert',
  };
}

/** Why a TLS client must be turned away after its handshake, or undefined to let it in. */
export function checkClientCert(t: TlsSettings, socket: tls.TLSSocket): string | undefined {
  const requires = REQUIRES_CERT.includes(t.clientAuth);
  const verifies = VERIFIES_CERT.includes(t.clientAuth);
  if (!requires && !verifies) return undefined;
  const cert = socket.getPeerCertificate();
  const given = cert !== null && typeof cert === 'object' && Object.keys(cert).length > 0;
  if (!given) return requires ? 'no client certificate' : undefined;
  if (verifies && !socket.authorized) return `client certificate not trusted: ${String(socket.authorizationError)}`;
  if (t.clientAllowedSans) {
    const sans = (cert.subjectaltname ?? '')
      .split(/,\s*/)
      .map((s) => s.replace(/^(DNS|IP Address|email|URI):/, ''))
      .filter(Boolean);
    if (!sans.some((s) => t.clientAllowedSans!.includes(s))) return `client certificate SANs [${sans.join(', ')}] are not in client_allowed_sans`;
  }
  return undefined;
}
