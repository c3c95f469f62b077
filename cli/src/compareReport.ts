// `fedsam simulate --compare --report FILE`: the comparison table as JSON, one row per training kind, each with its
// weighted mean (by validation objects, as the table prints it) and the per-site Dice and object counts.
export interface ReportRow {
  mean_dice: number;
  sites: Record<string, { dice: number; num_examples: number }>;
}

export interface CompareReport {
  box_baseline: ReportRow;
  local_only: ReportRow;
  federated: ReportRow;
  centralized: ReportRow;
  /** Each site's own model after the last round's local training (federated + personalized, same epoch budget). */
  federated_personalized?: ReportRow;
  /** Each site's Ditto personal model after the last round (with --ditto-lambda). */
  federated_ditto?: ReportRow;
}

/** A row from per-site Dice and counts; the mean is weighted by the counts. */
export function reportRow(names: readonly string[], dice: Record<string, number>, counts: Record<string, number>): ReportRow {
  const sites: ReportRow['sites'] = {};
  let s = 0, n = 0;
  for (const name of names) {
    const d = dice[name], k = counts[name];
    if (d === undefined || k === undefined) throw new Error(`report: no Dice or count for ${name}`);
    sites[name] = { dice: d, num_examples: k };
    s += d * k;
    n += k;
  }
  return { mean_dice: n ? s / n : NaN, sites };
}
