// Parsers for command-line values (every subcommand's): each error names the flag and the expected form.
import { InvalidArgumentError } from 'commander';
import { parseBoxJitter, type BoxJitter } from '@fedsam/shared/train/boxJitter';
import { parseBoxCrop, type BoxCrop } from '@fedsam/shared/boxCrop';

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

/** A number parser: `ok` says whether the value is acceptable, `refusal` what the error says otherwise. */
function numberParser(ok: (n: number) => boolean, refusal: (v: string) => string) {
  return (v: string): number => {
    const n = Number(v);
    if (!ok(n)) throw new InvalidArgumentError(refusal(v));
    return n;
  };
}

/** Any integer; the range is checked later (the server's config schema names the field in its error). */
export const parseInteger = (flag: string) => numberParser(Number.isInteger, () => `${flag} must be an integer`);

/** Any finite number; the range is checked later (the server's config schema). */
export const parseNumber = (flag: string) => numberParser(Number.isFinite, () => `${flag} must be a number`);

export const parsePositiveInt = (flag: string) =>
  numberParser((n) => Number.isInteger(n) && n > 0, (v) => `${flag} expects a positive integer, got "${v}"`);

export const parseNonNegInt = (flag: string) =>
  numberParser((n) => Number.isInteger(n) && n >= 0, (v) => `${flag} expects a non-negative integer, got "${v}"`);

export const parsePositiveFloat = (flag: string) =>
  numberParser((n) => Number.isFinite(n) && n > 0, (v) => `${flag} expects a positive number, got "${v}"`);

export const parseNonNegFloat = (flag: string) =>
  numberParser((n) => Number.isFinite(n) && n >= 0, (v) => `${flag} expects a non-negative number, got "${v}"`);

export const parseFraction = (flag: string) =>
  numberParser((n) => Number.isFinite(n) && n >= 0 && n < 1, (v) => `${flag} expects a number in [0, 1), got "${v}"`);
export const parseProbability = (flag: string) =>
  numberParser((n) => Number.isFinite(n) && n >= 0 && n <= 1, (v) => `${flag} expects a number in [0, 1], got "${v}"`);

/** Comma-separated names (e.g. sites); repeatable: collects into one list. */
export function parseNameList(v: string, prev: string[] = []): string[] {
  return [...prev, ...v.split(',').map((x) => x.trim()).filter(Boolean)];
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

/** 'sam' or whole pixels (shared/src/train/boxJitter.ts). */
export function parseBoxJitterArg(flag: string) {
  return (v: string): BoxJitter => {
    try {
      return parseBoxJitter(v);
    } catch {
      throw new InvalidArgumentError(`${flag} expects 'sam' (SAM's box noise) or a whole number of pixels (the HF recipe's outward jitter, e.g. 20), got "${v}"`);
    }
  };
}

/** 'off' or a crop size in box sides (shared/src/boxCrop.ts). */
export function parseBoxCropArg(flag: string) {
  return (v: string): BoxCrop => {
    try {
      return parseBoxCrop(v, flag);
    } catch (e) {
      throw new InvalidArgumentError((e as Error).message);
    }
  };
}
