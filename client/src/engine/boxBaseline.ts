import { dice } from '../data/metrics.ts';
import { filledBox } from '../data/mask.ts';
import type { EngineItem } from './trainer.ts';

/** Mean Dice of the filled tight box over items (the baseline to beat), at full resolution like evaluation. */
export async function boxBaseline(items: readonly EngineItem[]): Promise<number> {
  let s = 0;
  for (const it of items) s += dice(filledBox(it.sample.box, it.sample.width, it.sample.height), await it.sample.loadMask());
  return items.length ? s / items.length : NaN;
}
