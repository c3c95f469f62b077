// `fedsam predict` end to end with sam-vit-base-sized random weights (an HF folder written once with the helpers in
// common.ts), as a user runs it: a new process per call (model load, ONNX graph from the cache or built, session,
// preprocessing, encoder, decoder, post-processing, PNG). Compare with the steady encoder time of bench/encoder.ts
// in the same window.
//
//   node --import tsx bench/predict.ts [--runs N] [--engine onnx|tfjs] [--folder DIR]
//
// The first call builds the ONNX graph into a fresh graph cache (once per model); the others read it.
import { parseArgs } from 'node:util';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, access } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { samVitBaseConfig } from '@fedsam/shared/config';
import { expectedSamParameters } from '@fedsam/shared/checkpoint/keys';
import { saveSamCheckpoint } from '@fedsam/shared/checkpoint/save';
import { lcgWeights, median } from './common.ts';

const { values: v } = parseArgs({ options: { runs: { type: 'string', default: '3' }, engine: { type: 'string', default: 'onnx' }, folder: { type: 'string' } } });
const FEDSAM = fileURLToPath(new URL('../bin/fedsam.mjs', import.meta.url));
const work = await mkdtemp(join(tmpdir(), 'fedsam-bench-predict-'));
const folder = v.folder ?? join(work, 'sam-vit-base-random');
try {
  await access(join(folder, 'model.safetensors'));
} catch {
  const config = samVitBaseConfig();
  await saveSamCheckpoint(folder, config, lcgWeights(expectedSamParameters(config), 20241));
}
const img = join(work, 'photo.png');
const W = 1800, H = 1200;
const px = Buffer.alloc(W * H * 3);
for (let i = 0; i < px.length; i++) px[i] = (i * 2654435761) >>> 24;
await sharp(px, { raw: { width: W, height: H, channels: 3 } }).png().toFile(img);
const env = { ...process.env, FEDSAM_ONNX_CACHE: join(work, 'onnx'), FEDSAM_LOG_LEVEL: 'warn' };
const once = () => new Promise<number>((resolve, reject) => {
  const t0 = performance.now();
  // executed as a user runs it: the script itself (its shebang sets the node flags and glibc tunables)
  execFile(FEDSAM, ['--engine', v.engine!, 'predict', '--model', folder, '--image', img, '--box', '425,600,700,875', '--out', join(work, 'mask.png')],
    { env }, (err, _out, stderr) => (err ? reject(new Error(stderr)) : resolve((performance.now() - t0) / 1000)));
});
const times: number[] = [];
for (let r = 0; r < Number(v.runs); r++) {
  const t = await once();
  times.push(t);
  console.log(`predict ${r + 1}${r === 0 ? ' (builds the ONNX graph into an empty graph cache)' : ''}: ${t.toFixed(2)} s`);
}
console.log(`\n| fedsam predict, sam-vit-base random weights, engine ${v.engine} | s |\n|---|---|\n| first call (graph built) | ${times[0].toFixed(2)} |\n| later calls (graph cached), median of ${times.length - 1} | ${median(times.slice(1)).toFixed(2)} |`);
await rm(work, { recursive: true, force: true });
