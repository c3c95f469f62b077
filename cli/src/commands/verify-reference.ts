// fedsam verify-reference: this implementation against golden tensors from the original PyTorch SAM.
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { verifyReferenceFolder } from '@fedsam/shared/reference';
import { currentEngine } from '@fedsam/shared/inference';
import { renderTable } from '@fedsam/shared/table';
import { print } from '../options.ts';

export function registerVerifyReferenceCommand(program: Command): Command {
  return program.command('verify-reference')
    .description('check this implementation against golden tensors from the original PyTorch SAM (fixture folders with manifest.json), on the engine of --engine')
    .argument('<folders...>', 'fixture folders, e.g. ../shared/fixtures/sam-reference/tiny-box')
    .action(async (folders: string[]) => {
      let failed = 0;
      for (const f of folders) {
        const t0 = performance.now();
        const engine = currentEngine().name;
        const { kind, rows } = await verifyReferenceFolder(resolve(f), engine);
        print(`\n${f}  (${kind}, engine ${engine}, ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
        print(renderTable(['tensor', 'max abs err', 'max rel err', 'err/tol', 'tolerance', 'result'],
          rows.map((r) => [r.tensor + (r.note ? ` (${r.note})` : ''), r.maxAbs, r.maxRel, r.ratio, r.tolerance, r.pass ? 'ok' : 'FAIL'])));
        const bad = rows.filter((r) => !r.pass).length;
        failed += bad;
        print(bad ? `${bad} of ${rows.length} checks over tolerance` : `all ${rows.length} checks within tolerance`);
      }
      if (failed) process.exitCode = 1;
    });
}
