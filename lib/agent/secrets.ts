import { OutpostError } from '../util/errors.js';

/**
 * Sealed secrets in job payloads (issue 12 "Secrets in payloads"): a pool has
 * an X25519 key pair; the job side seals a password with the pool's public key
 * (libsodium `crypto_box_seal`, an anonymous sealed box: X25519 + XSalsa20-
 * Poly1305), the proxy stores only the box, and the pool's agents open it in
 * memory with the private key. No crypto of our own: libsodium does it all.
 *
 * libsodium (a ~1 MB WebAssembly module) is loaded on the first job that needs
 * it, not at start: an idle agent does not pay for it.
 */

/** The algorithm name the proxy hands out with a pool's public key. */
export { SEALED_BOX_ALGORITHM } from '../protocol/schemas.js';
/** Bytes of an X25519 key (crypto_box_PUBLICKEYBYTES = crypto_box_SECRETKEYBYTES). */
export const KEY_BYTES = 32;
/** Longest plaintext a sealed value may carry (the same bound as a plain-string secret). */
export const MAX_SECRET_CHARS = 1024;

type Sodium = (typeof import('libsodium-wrappers'))['default'];
let loading: Promise<Sodium> | undefined;

/** libsodium, loaded once on first use. */
export function loadSodium(): Promise<Sodium> {
  loading ??= import('libsodium-wrappers').then(async (m) => {
    const sodium = (m as unknown as { default?: Sodium }).default ?? m;
    await sodium.ready;
    return sodium;
  });
  return loading;
}

/** Strict standard base64 (the ORIGINAL variant, padded) of exactly `bytes` bytes, or undefined. */
function decodeKey(sodium: Sodium, b64: string, bytes: number): Uint8Array | undefined {
  const text = b64.trim();
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text)) return undefined;
  try {
    const key = sodium.from_base64(text, sodium.base64_variants.ORIGINAL);
    return key.length === bytes ? key : undefined;
  } catch {
    return undefined;
  }
}

/** Checks a public key given as base64; throws `invalid_request` naming `what` (a key is not a secret, still not echoed). */
export async function parsePublicKey(b64: string, what = 'publicKey'): Promise<Uint8Array> {
  const sodium = await loadSodium();
  const key = decodeKey(sodium, b64, KEY_BYTES);
  if (!key) throw new OutpostError('invalid_request', `${what}: must be a base64 X25519 public key of ${KEY_BYTES} bytes`);
  return key;
}

/** A new pool key pair, base64 (ORIGINAL variant). */
export async function generateKeyPair(): Promise<{ publicKey: string; privateKey: string }> {
  const sodium = await loadSodium();
  const kp = sodium.crypto_box_keypair();
  const v = sodium.base64_variants.ORIGINAL;
  const out = { publicKey: sodium.to_base64(kp.publicKey, v), privateKey: sodium.to_base64(kp.privateKey, v) };
  sodium.memzero(kp.privateKey);
  return out;
}

/** Seals `plaintext` for the holder of the private key of `publicKeyB64`; base64 (ORIGINAL). */
export async function sealSecret(plaintext: string, publicKeyB64: string): Promise<string> {
  if (!plaintext) throw new OutpostError('invalid_request', 'the secret is empty');
  if (plaintext.length > MAX_SECRET_CHARS) throw new OutpostError('invalid_request', `the secret is longer than ${MAX_SECRET_CHARS} characters`);
  const sodium = await loadSodium();
  const key = await parsePublicKey(publicKeyB64);
  const message = sodium.from_string(plaintext);
  const box = sodium.crypto_box_seal(message, key);
  sodium.memzero(message);
  return sodium.to_base64(box, sodium.base64_variants.ORIGINAL);
}

/**
 * Opens sealed values with the pool's private key (base64, from the agent's
 * `sealing.privateKeyFile`). The key is checked when the first box comes (a
 * malformed key file fails that job clearly, and `bin/agent check`); the
 * public key is derived from it once.
 */
export class SecretOpener {
  private keys: Promise<{ publicKey: Uint8Array; privateKey: Uint8Array }> | undefined;

  /** @param privateKeyB64 the pool's private key, or null when the agent has none configured. */
  constructor(private readonly privateKeyB64: string | null) {}

  /** Whether a key is configured at all. */
  get configured(): boolean {
    return this.privateKeyB64 !== null;
  }

  /**
   * The plaintext of a sealed value of payload field `field`. Every failure
   * is a non-retryable `invalid_request` naming the field, never the value.
   */
  async open(sealed: string, field: string): Promise<string> {
    if (this.privateKeyB64 === null) {
      throw new OutpostError('invalid_request', `${field}: the value is sealed but this agent has no sealing key (sealing.privateKeyFile)`);
    }
    const sodium = await loadSodium();
    const { publicKey, privateKey } = await this.keyPair(sodium);
    const refused = new OutpostError('invalid_request', `${field}: the sealed value does not open with this pool's key`);
    const box = decodeBox(sodium, sealed);
    if (!box || box.length <= sodium.crypto_box_SEALBYTES) throw refused;
    let opened: Uint8Array;
    try {
      opened = sodium.crypto_box_seal_open(box, publicKey, privateKey);
    } catch {
      throw refused;
    }
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(opened);
    } catch {
      throw new OutpostError('invalid_request', `${field}: the sealed value is not UTF-8 text`);
    } finally {
      sodium.memzero(opened);
    }
    if (!text) throw new OutpostError('invalid_request', `${field}: the sealed value is empty`);
    if (text.length > MAX_SECRET_CHARS) throw new OutpostError('invalid_request', `${field}: the sealed value is longer than ${MAX_SECRET_CHARS} characters`);
    return text;
  }

  private keyPair(sodium: Sodium): Promise<{ publicKey: Uint8Array; privateKey: Uint8Array }> {
    this.keys ??= Promise.resolve().then(() => {
      const privateKey = decodeKey(sodium, this.privateKeyB64 ?? '', KEY_BYTES);
      if (!privateKey) {
        // Not cached: a fixed file is read again only at restart, but the error must not stick as a rejected promise forever either.
        this.keys = undefined;
        throw new OutpostError('config_error', `sealing.privateKeyFile: must hold a base64 X25519 private key of ${KEY_BYTES} bytes (bin/agent keygen)`);
      }
      return { privateKey, publicKey: sodium.crypto_scalarmult_base(privateKey) };
    });
    return this.keys;
  }
}

/** A sealed box in base64: the standard alphabet, or the URL-safe one (both allowed by the payload schema). */
function decodeBox(sodium: Sodium, text: string): Uint8Array | undefined {
  for (const variant of [sodium.base64_variants.ORIGINAL, sodium.base64_variants.URLSAFE, sodium.base64_variants.URLSAFE_NO_PADDING]) {
    try {
      return sodium.from_base64(text, variant);
    } catch {
      // try the next alphabet
    }
  }
  return undefined;
}

/** Checks a private key text (for `bin/agent check` and config loading): throws `config_error`, never echoing it. */
export async function checkPrivateKey(privateKeyB64: string): Promise<string> {
  const sodium = await loadSodium();
  const key = decodeKey(sodium, privateKeyB64, KEY_BYTES);
  if (!key) throw new OutpostError('config_error', `sealing.privateKeyFile: must hold a base64 X25519 private key of ${KEY_BYTES} bytes (bin/agent keygen)`);
  const pub = sodium.to_base64(sodium.crypto_scalarmult_base(key), sodium.base64_variants.ORIGINAL);
  sodium.memzero(key);
  return pub;
}
