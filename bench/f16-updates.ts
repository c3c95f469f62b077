// How much of a site's update survives the float16 wire format (`--upload-dtype F16`).
//
//   node --import tsx bench/f16-updates.ts
//
// A site uploads its new weights, not the change; float16 keeps 11 significant bits of each weight, so the
// rounding error scales with the weights while a round's change at the recipe's lr 1e-5 is small. Weights: the
// sam-vit-base decoder's names and shapes with deterministic uniform ±0.05 values (bench/common.ts); the update:
// independent uniform ±size per weight. Printed: ||f16(w + d) - (w + d)|| / ||d||, the part of the update lost.
import { float16ArrayToFloat32, float32ArrayToFloat16 } from '@fedsam/shared/safetensors';
import { lcgWeights, vitBaseDecoderShapes } from './common.ts';

const weights = lcgWeights(vitBaseDecoderShapes(), 1);
let state = 7;
const uniform = (): number => {
  state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
  return (state / 4294967296 - 0.5) * 2;
};

const rows: string[] = [];
for (const size of [1e-5, 1e-4, 1e-3, 1e-2]) {
  let lost = 0;
  let update = 0;
  for (const t of weights.values()) {
    const w = t.data as Float32Array;
    const sent = new Float32Array(w.length);
    for (let i = 0; i < w.length; i++) sent[i] = w[i]! + size * uniform();
    const received = float16ArrayToFloat32(float32ArrayToFloat16(sent));
    for (let i = 0; i < w.length; i++) {
      lost += (received[i]! - sent[i]!) ** 2;
      update += (sent[i]! - w[i]!) ** 2;
    }
  }
  rows.push(`| ±${size.toExponential(0)} | ${(100 * Math.sqrt(lost / update)).toFixed(2)}% |`);
}
process.stdout.write(
  ['Float16 uploads: the part of an update lost to rounding (sam-vit-base decoder shapes, weights uniform ±0.05)', '',
    '| update per weight | lost (relative L2) |', '|---|---|', ...rows].join('\n') + '\n',
);
