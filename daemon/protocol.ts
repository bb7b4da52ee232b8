// The control protocol: one JSON object per line each way over the Unix
// socket. Every message carries the protocol version `v`.
import type { ErrorBody } from './errors.js';

export const PROTOCOL_VERSION = 1;
/** Longest request line accepted; longer ones get CONTROL_REQUEST_TOO_LARGE. */
export const MAX_REQUEST_BYTES = 64 * 1024;

export interface Request {
  v: number;
  id: number | string;
  method: string;
  params?: Record<string, unknown>;
}

export type Response =
  | { v: typeof PROTOCOL_VERSION; id: number | string | null; ok: true; result: unknown }
  | { v: typeof PROTOCOL_VERSION; id: number | string | null; ok: false; error: ErrorBody };

export const METHODS = ['ping', 'version', 'add', 'add_port', 'attach', 'detach', 'list', 'status', 'fstab', 'stop', 'reload'] as const;
export type Method = (typeof METHODS)[number];
