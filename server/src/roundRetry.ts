// What happens when a round gets fewer updates than min_fit_clients: it is tried again after a delay that doubles
// with every attempt (so sites that fail at once do not turn the retries into a busy loop), and with
// max_round_attempts set the federation stops with a RoundFailedError that says why each site failed.
/** The longest wait between two attempts of a round. */
export const ROUND_RETRY_MAX_DELAY_S = 60;

/** Seconds to wait after failed attempt `attempt` (1-based): first · 2^(attempt−1), at most ROUND_RETRY_MAX_DELAY_S. */
export function roundRetryDelayS(first: number, attempt: number): number {
  return Math.min(first * 2 ** (attempt - 1), ROUND_RETRY_MAX_DELAY_S);
}

/** A round that got too few updates in max_round_attempts attempts; `failed` holds each failed site's reason. */
export class RoundFailedError extends Error {
  override name = 'RoundFailedError';
  constructor(readonly round: number, readonly attempts: number, readonly accepted: number, readonly required: number, readonly failed: Record<string, string>) {
    const why = Object.entries(failed).map(([site, reason]) => `${site}: ${reason}`).join('; ');
    super(`round ${round}: only ${accepted} of the ${required} required updates after ${attempts} attempt${attempts === 1 ? '' : 's'}${why ? ` (${why})` : ''}`);
  }
}
