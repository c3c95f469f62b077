// What the server checks before an update or an evaluation counts: that it answers the site's own open task
// (round, task id, slot state), and its contents (manifest names / shapes / dtypes / size, num_examples, metrics).
// Every refusal is a FedError with a machine-readable reason (the metrics label) and a message for the site.
import type { TensorLayout } from '@fedsam/shared/transfer/manifest';
import type { EvaluationResult, UpdateHeader } from '@fedsam/shared/transfer/messages';
import { checkManifest } from '@fedsam/shared/transfer/manifest';
import { failedPrecondition, invalidArgument, permissionDenied } from './errors.ts';
import type { Phase, TaskSlot } from './coordinator.ts';

/** More examples than any site has: a corrupt or hostile count. */
export const MAX_EXAMPLES = 1e12;

export function checkNumExamples(value: number | string | undefined): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0 || n > MAX_EXAMPLES) {
    throw invalidArgument('bad_num_examples', `num_examples must be a positive integer, got ${value}`);
  }
  return n;
}

/** The metrics as numbers, each finite. */
export function finiteMetrics(m: Record<string, number> | undefined, what: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(m ?? {})) {
    if (typeof v !== 'number' || !Number.isFinite(v)) throw invalidArgument('bad_metrics', `${what}: metric "${k}" is not a finite number (${v})`);
    out[k] = v;
  }
  return out;
}

/**
 * The slot of `site` in the open phase, if this submission is its current, unanswered task of that kind and round;
 * else the refusal (stale round or task, someone else's task, not sampled, duplicate, dropped).
 */
export function checkSlot(p: Phase | undefined, completedRound: number, site: string, kind: 'fit' | 'evaluate', round: number, taskId: string): TaskSlot {
  const what = kind === 'fit' ? 'update' : 'evaluation';
  if (!p || p.closed || p.kind !== kind || p.round !== round) {
    const open = p && !p.closed ? `${p.kind} round ${p.round} is open` : `no ${kind} round is open (last completed round: ${completedRound})`;
    throw failedPrecondition('stale_round', `stale ${what}: it is for round ${round} but ${open}`);
  }
  const owner = p.byTaskId.get(taskId);
  if (owner && owner.site !== site) {
    throw permissionDenied('not_your_task', `task ${taskId} is assigned to another site, not to ${site}: a site can only answer its own tasks`);
  }
  const slot = p.slots.get(site);
  if (!slot) throw permissionDenied('not_sampled', `site ${site} was not sampled for ${kind} round ${round}`);
  if (slot.taskId !== taskId) throw failedPrecondition('stale_task', `stale ${what}: task ${taskId} is not the current task of site ${site} for round ${round} (${slot.taskId})`);
  switch (slot.status) {
    case 'accepted':
      throw failedPrecondition('duplicate', `site ${site} already submitted an ${what} for round ${round} (one per site per round)`);
    case 'failed':
      throw failedPrecondition('dropped', `site ${site} was dropped from round ${round}: ${slot.reason ?? 'failed'}`);
    case 'receiving':
      throw failedPrecondition('duplicate', `an ${what} from site ${site} for round ${round} is already being received`);
    default:
      return slot;
  }
}

/** An update's header, before any payload is read: its numbers, metrics and manifest against the global's layout. */
export function checkUpdateHeader(header: UpdateHeader, layout: TensorLayout, maxBytes: number): { numExamples: number; metrics: Record<string, number> } {
  const numExamples = checkNumExamples(header.num_examples);
  const metrics = finiteMetrics(header.metrics, 'update');
  const problem = checkManifest(header.manifest, layout, { maxBytes });
  if (problem) throw invalidArgument(problem.reason, `update manifest refused: ${problem.message}`);
  return { numExamples, metrics };
}

/** An evaluation result's numbers and metrics. */
export function checkEvaluation(r: EvaluationResult): { numExamples: number; metrics: Record<string, number> } {
  return { numExamples: checkNumExamples(r.num_examples), metrics: finiteMetrics(r.metrics, 'evaluation') };
}
