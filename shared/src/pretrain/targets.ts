// Ground truth at the decoder's low-res mask size (4x the embedding grid, in the padded model-input frame): the
// fraction of each low-res cell the object covers, so thin objects of a pixel or two keep a (soft) target.

/** mask [height x width] 0/1 in the sample's frame -> [L x L] coverage in [0, 1]; `scale` = model-input px per sample px, S = model input side. */
export function lowResTarget(mask: Uint8Array, width: number, height: number, scale: number, S: number, L: number): Float32Array {
  const out = new Float32Array(L * L);
  const f = (scale * L) / S; // low-res cells per sample pixel
  const span = (c: number, n: number): [number, number] => {
    const a = Math.min(n - 1, Math.floor(c / f));
    return [a, Math.max(a + 1, Math.min(n, Math.ceil((c + 1) / f)))];
  };
  const rows = Math.min(L, Math.ceil(height * f)), cols = Math.min(L, Math.ceil(width * f));
  for (let cy = 0; cy < rows; cy++) {
    const [y0, y1] = span(cy, height);
    for (let cx = 0; cx < cols; cx++) {
      const [x0, x1] = span(cx, width);
      let s = 0;
      for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) s += mask[y * width + x]!;
      out[cy * L + cx] = s / ((y1 - y0) * (x1 - x0));
    }
  }
  return out;
}
