// PyTorch's bilinear interpolation (F.interpolate mode='bilinear', align_corners=False, no antialias) on float32
// maps, with torch's float32 arithmetic: what HF SamProcessor.post_process_masks runs.

interface LinearIdx {
  i0: Int32Array;
  i1: Int32Array;
  l0: Float32Array;
  l1: Float32Array;
}

/** PyTorch upsample_bilinear2d (align_corners=False) source indices/weights, float32 like torch. */
function linearIndices(inSize: number, outSize: number, count = outSize): LinearIdx {
  const i0 = new Int32Array(count), i1 = new Int32Array(count), l0 = new Float32Array(count), l1 = new Float32Array(count);
  if (inSize === outSize) {
    for (let o = 0; o < count; o++) {
      i0[o] = o;
      i1[o] = o;
      l0[o] = 1;
      l1[o] = 0;
    }
    return { i0, i1, l0, l1 };
  }
  // float32 scale, source index in double (torch's accumulate type on CPU), weights float32. Matches the
  // torch 1.13 fixture to ~2e-6 (rounding the index to float32 instead gives ~2e-4).
  const scale = Math.fround(inSize / outSize);
  for (let o = 0; o < count; o++) {
    let src = scale * (o + 0.5) - 0.5;
    if (src < 0) src = 0;
    const a = Math.trunc(src);
    i0[o] = a;
    i1[o] = a + (a < inSize - 1 ? 1 : 0);
    const lam = Math.fround(Math.min(Math.max(src - a, 0), 1));
    l1[o] = lam;
    l0[o] = Math.fround(1 - lam);
  }
  return { i0, i1, l0, l1 };
}

/**
 * Bilinear resize (PyTorch F.interpolate bilinear, align_corners=False, no antialias) of a [inH, inW] float32 map
 * (rows of length `inStride`), computing only the top-left [outRows, outCols] of the [outH, outW] result.
 * float32 arithmetic: out = h0*(w0*x00 + w1*x01) + h1*(w0*x10 + w1*x11).
 */
export function resizeBilinearTorch(
  src: Float32Array,
  inH: number,
  inW: number,
  outH: number,
  outW: number,
  opts: { inStride?: number; srcOffset?: number; outRows?: number; outCols?: number } = {},
): Float32Array {
  const stride = opts.inStride ?? inW;
  const off = opts.srcOffset ?? 0;
  const rows = opts.outRows ?? outH;
  const cols = opts.outCols ?? outW;
  const fr = Math.fround;
  const cx = linearIndices(inW, outW, cols);
  const cy = linearIndices(inH, outH, rows);
  // horizontal interpolation of every source row that is used (same arithmetic as torch's nested evaluation)
  const used = new Int32Array(inH).fill(-1);
  let nUsed = 0;
  for (let o = 0; o < rows; o++) {
    for (const r of [cy.i0[o]!, cy.i1[o]!]) if (used[r] === -1) used[r] = nUsed++;
  }
  const hor = new Float32Array(nUsed * cols);
  for (let r = 0; r < inH; r++) {
    const slot = used[r]!;
    if (slot < 0) continue;
    const base = off + r * stride;
    const ob = slot * cols;
    for (let x = 0; x < cols; x++) {
      hor[ob + x] = fr(fr(src[base + cx.i0[x]!]! * cx.l0[x]!) + fr(src[base + cx.i1[x]!]! * cx.l1[x]!));
    }
  }
  const out = new Float32Array(rows * cols);
  for (let y = 0; y < rows; y++) {
    const a = used[cy.i0[y]!]! * cols;
    const b = used[cy.i1[y]!]! * cols;
    const h0 = cy.l0[y]!, h1 = cy.l1[y]!;
    const ob = y * cols;
    for (let x = 0; x < cols; x++) out[ob + x] = fr(fr(hor[a + x]! * h0) + fr(hor[b + x]! * h1));
  }
  return out;
}
