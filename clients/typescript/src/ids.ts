/**
 * Client-side ids: `clientMsgId`s (the idempotency key of a send) and frame ids.
 * @module
 */

interface CryptoLike {
  randomUUID?: () => string;
  getRandomValues?: <T extends ArrayBufferView | null>(array: T) => T;
}

/**
 * A random UUID v4: `crypto.randomUUID` where the platform has it (browsers,
 * Node ≥ 19), else `getRandomValues`, else `Math.random` (React Native without
 * a crypto polyfill). Valid as a `clientMsgId` (`[A-Za-z0-9_-]`, 36 chars).
 */
export function randomId(): string {
  const c = (globalThis as { crypto?: CryptoLike }).crypto;
  if (c?.randomUUID) return c.randomUUID();
  const bytes = new Uint8Array(16);
  if (c?.getRandomValues) c.getRandomValues(bytes);
  else for (let i = 0; i < 16; i++) bytes[i] = Math.floor(Math.random() * 256);
  bytes[6] = ((bytes[6] ?? 0) & 0x0f) | 0x40;
  bytes[8] = ((bytes[8] ?? 0) & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
