// Small parsing helpers shared by the commands.
import { homedir } from 'node:os';
import { join } from 'node:path';

export class UsageError extends Error {}

/** "10G", "512M", "1.5T", "4096" → bytes (binary units). */
export function parseSize(text: string, what: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?$/i.exec(text.trim());
  if (!m) throw new UsageError(`${what}: '${text}' is not a size; write it like 10G, 512M or 1048576`);
  const unit = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  return Math.floor(Number(m[1]) * unit);
}

export function parseCount(text: string | undefined, what: string, fallback: number, min = 0): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isFinite(n) || n < min) throw new UsageError(`${what}: '${text}' must be a number ≥ ${min}`);
  return n;
}

export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env['XDG_CACHE_HOME'] || join(homedir(), '.cache');
  return join(base, 'xnatfs');
}
