// A site's weight in FedAvg and in evaluation means, from the num_examples it reports about itself and the
// server's weighting policy (config `weighting`, per-site `max_examples` / `num_examples` in the site registry):
//   uniform   1 for every site: counts are ignored                                          [default]
//   capped    the count, clipped at the site's max_examples (else weighting.max_examples)
//   registry  the site's declared num_examples: counts are ignored (one above the declaration is logged)
//   reported  the count as sent (Flower's FedAvg): a site can claim any weight
// README ("What a lying site can do") says what each one bounds.
import type { ServerConfig } from './config.ts';

export interface SiteWeight {
  /** What the round uses. */
  weight: number;
  /** Set when the weight is not what the site reported and the site claimed more: why. */
  clipped?: string;
}

export class ExampleWeights {
  private readonly sites: Map<string, ServerConfig['sites'][number]>;

  constructor(private readonly cfg: ServerConfig['weighting'], sites: ServerConfig['sites']) {
    this.sites = new Map(sites.map((s) => [s.name, s]));
  }

  get policy(): ServerConfig['weighting']['policy'] {
    return this.cfg.policy;
  }

  weigh(site: string, reported: number): SiteWeight {
    const entry = this.sites.get(site);
    switch (this.cfg.policy) {
      case 'reported':
        return { weight: reported };
      case 'uniform':
        return { weight: 1 };
      case 'registry': {
        const declared = entry?.num_examples ?? 1; // the config schema requires it for every site
        return reported > declared ? { weight: declared, clipped: `reported ${reported} examples, declared ${declared}` } : { weight: declared };
      }
      case 'capped': {
        const cap = entry?.max_examples ?? this.cfg.max_examples;
        return reported > cap ? { weight: cap, clipped: `reported ${reported} examples, clipped at ${cap}` } : { weight: reported };
      }
    }
  }
}
