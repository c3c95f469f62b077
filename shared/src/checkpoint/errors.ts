// A checkpoint that does not match its config: one error listing every missing / unexpected / mismatched key.
import type { SamConfig } from '../config.ts';

export class CheckpointError extends Error {
  override name = 'CheckpointError';
  constructor(
    message: string,
    readonly missing: string[] = [],
    readonly unexpected: string[] = [],
    readonly mismatched: string[] = [],
  ) {
    super(message);
  }
}

const MAX_LISTED = 12;

export function listCapped(items: string[]): string {
  const shown = items.slice(0, MAX_LISTED).join(', ');
  return items.length > MAX_LISTED ? `${shown}, ... (${items.length - MAX_LISTED} more)` : shown;
}

function describeConfig(c: SamConfig): string {
  return (
    `vision ${c.vision.num_hidden_layers} layers x ${c.vision.hidden_size}, image ${c.vision.image_size}; ` +
    `prompt ${c.prompt.hidden_size}; decoder ${c.decoder.num_hidden_layers} layers x ${c.decoder.hidden_size}`
  );
}

/** One error listing every missing / unexpected / mismatched key. */
export function mismatchError(
  where: string,
  config: SamConfig,
  missing: string[],
  unexpected: string[],
  mismatched: string[],
  hints: string[],
  action: string,
): CheckpointError {
  const counts = [
    missing.length && `${missing.length} missing`,
    unexpected.length && `${unexpected.length} unexpected`,
    mismatched.length && `${mismatched.length} mismatched`,
  ].filter(Boolean);
  const lines = [`${where} does not match its config (${describeConfig(config)}): ${counts.join(', ')} key(s).`];
  if (missing.length) lines.push(`  missing (${missing.length}): ${listCapped(missing)}`);
  if (unexpected.length) lines.push(`  unexpected (${unexpected.length}): ${listCapped(unexpected)}`);
  if (mismatched.length) lines.push(`  mismatched (${mismatched.length}): ${listCapped(mismatched)}`);
  lines.push(...hints.map((h) => `  ${h}`));
  lines.push(`  ${action}`);
  return new CheckpointError(lines.join('\n'), missing, unexpected, mismatched);
}
