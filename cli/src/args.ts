// Parsers for command-line values (every subcommand's): each error names the flag and the expected form.
import { InvalidArgumentError } from 'commander';

export function parseNumberList(flag: string, n: number) {
  return (v: string): number[] => {
    const parts = v.split(',').map((s) => s.trim());
    const nums = parts.map(Number);
    if (parts.length !== n || nums.some((x) => !Number.isFinite(x))) {
      throw new InvalidArgumentError(`${flag} expects ${n} comma-separated numbers, got "${v}"`);
    }
    return nums;
  };
}

/** N comma-separated non-negative integers (e.g. point prompt counts "1,1"). */
export function parseCounts(flag: string, n: number) {
  return (v: string): number[] => {
    const nums = v.split(',').map((s) => Number(s.trim()));
    if (nums.length !== n || nums.some((x) => !Number.isInteger(x) || x < 0)) {
      throw new InvalidArgumentError(`${flag} expects ${n} comma-separated non-negative integers, got "${v}"`);
    }
    return nums;
  };
}

/** x,y,label (repeatable: collects into a list). */
export function parsePoint(v: string, prev: number[][] = []): number[][] {
  const parts = v.split(',').map((s) => s.trim());
  const nums = parts.map(Number);
  if (parts.length !== 3 || nums.some((x) => !Number.isFinite(x)) || (nums[2] !== 0 && nums[2] !== 1)) {
    throw new InvalidArgumentError(`--point expects x,y,label with label 1 (foreground) or 0 (background), got "${v}"`);
  }
  return [...prev, nums];
}

/** Any integer; the range is checked later (the server's config schema names the field in its error). */
export function parseInteger(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n)) throw new InvalidArgumentError(`${flag} must be an integer`);
    return n;
  };
}

/** Any finite number; the range is checked later (the server's config schema). */
export function parseNumber(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n)) throw new InvalidArgumentError(`${flag} must be a number`);
    return n;
  };
}

export function parsePositiveInt(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`${flag} expects a positive integer, got "${v}"`);
    return n;
  };
}

export function parseNonNegInt(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`${flag} expects a non-negative integer, got "${v}"`);
    return n;
  };
}

export function parsePositiveFloat(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`${flag} expects a positive number, got "${v}"`);
    return n;
  };
}

export function parseFraction(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0 || n >= 1) throw new InvalidArgumentError(`${flag} expects a number in [0, 1), got "${v}"`);
    return n;
  };
}

export interface SiteSpec {
  name: string;
  token_sha256: string;
}

/** NAME:SHA256 (or a comma-separated list of them, as in FEDSAM_SITES); repeatable. */
export function parseSiteSpec(v: string, prev: SiteSpec[] = []): SiteSpec[] {
  const out = [...prev];
  for (const part of v.split(',').map((p) => p.trim()).filter(Boolean)) {
    const i = part.lastIndexOf(':');
    if (i <= 0) throw new InvalidArgumentError(`--site expects NAME:SHA256_OF_TOKEN, got "${part}"`);
    out.push({ name: part.slice(0, i), token_sha256: part.slice(i + 1) });
  }
  return out;
}
