// Deterministic train/validation split by group (patient / volume / image), so no group is on both sides.
import { Rng } from './rng.ts';

export interface SplitOptions {
  /** Fraction of groups for validation (default 0.2). */
  valFraction?: number;
  seed?: number;
}

export interface Split<T> {
  train: T[];
  val: T[];
  trainGroups: string[];
  valGroups: string[];
}

/**
 * Groups are sorted, shuffled with the seed, and round(valFraction * nGroups) of them go to validation
 * (at least 1 and at most nGroups - 1 when there are >= 2 groups and valFraction > 0). Item order is kept.
 */
export function splitByGroup<T extends { group: string }>(items: readonly T[], opts: SplitOptions = {}): Split<T> {
  const frac = opts.valFraction ?? 0.2;
  if (!(frac >= 0 && frac < 1)) throw new RangeError(`valFraction must be in [0, 1) (got ${frac})`);
  const groups = [...new Set(items.map((s) => s.group))].sort();
  let nVal = Math.round(frac * groups.length);
  if (frac > 0 && groups.length >= 2) nVal = Math.min(groups.length - 1, Math.max(1, nVal));
  if (groups.length < 2) nVal = 0;
  new Rng(opts.seed ?? 0).fork('split').shuffle(groups);
  const valSet = new Set(groups.slice(0, nVal));
  return {
    train: items.filter((s) => !valSet.has(s.group)),
    val: items.filter((s) => valSet.has(s.group)),
    trainGroups: groups.slice(nVal).sort(),
    valGroups: groups.slice(0, nVal).sort(),
  };
}
