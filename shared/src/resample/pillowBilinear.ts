// Pillow's BILINEAR resample (libImaging/Resample.c, 8 bits per channel), bit-exact: what HF SamImageProcessor's
// resize runs (PIL Image.resize). Antialiased triangle filter, 22-bit fixed point, horizontal pass then vertical
// pass, each rounded to uint8.

const PRECISION_BITS = 32 - 8 - 2;
const ONE_HALF = 1 << (PRECISION_BITS - 1);

interface Coeffs {
  ksize: number;
  /** [xmin, count] per output index */
  bounds: Int32Array;
  /** fixed-point weights, ksize per output index */
  kk: Int32Array;
}

function bilinearFilter(x: number): number {
  if (x < 0.0) x = -x;
  return x < 1.0 ? 1.0 - x : 0.0;
}

/** precompute_coeffs + normalize_coeffs_8bpc for the BILINEAR filter (support 1), box [0, inSize]. */
function precomputeCoeffs(inSize: number, outSize: number): Coeffs {
  const scale = inSize / outSize;
  const filterscale = scale < 1.0 ? 1.0 : scale;
  const support = 1.0 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Int32Array(outSize * ksize);
  const w = new Float64Array(ksize);
  const ss = 1.0 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = 0.0 + (xx + 0.5) * scale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0.0;
    for (let x = 0; x < xmax; x++) {
      const v = bilinearFilter((x + xmin - center + 0.5) * ss);
      w[x] = v;
      ww += v;
    }
    for (let x = 0; x < xmax; x++) {
      const v = ww !== 0.0 ? w[x]! / ww : w[x]!;
      kk[xx * ksize + x] = v < 0 ? Math.trunc(-0.5 + v * (1 << PRECISION_BITS)) : Math.trunc(0.5 + v * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, kk };
}

/** clip8(ss) = clamp(ss >> 22, 0, 255); ss is always within int32 for the bilinear filter. */
function clip8(ss: number): number {
  const v = ss >> PRECISION_BITS;
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/**
 * Pillow `Image.resize((outW, outH), Image.BILINEAR)` on interleaved uint8 data with `channels` channels
 * (ImagingResampleInner: horizontal pass over only the rows the vertical pass needs, then the vertical pass;
 * a pass is skipped when its dimension does not change). Bit-exact with Pillow's C code.
 */
export function resizeBilinearPillow(src: Uint8Array, width: number, height: number, channels: number, outW: number, outH: number): Uint8Array {
  if (src.length !== width * height * channels) throw new Error(`resize: data has ${src.length} bytes, expected ${width}x${height}x${channels}`);
  if (!(outW > 0 && outH > 0)) throw new Error(`resize: invalid output size ${outW}x${outH}`);
  const needH = outW !== width;
  const needV = outH !== height;
  if (!needH && !needV) return new Uint8Array(src);
  const C = channels;
  const vert = precomputeCoeffs(height, outH);
  const yFirst = vert.bounds[0]!;
  const yLast = vert.bounds[outH * 2 - 2]! + vert.bounds[outH * 2 - 1]!;

  let img = src;
  let imgW = width;
  let rowOffset = 0; // first source row held in `img`
  if (needH) {
    const { ksize, bounds, kk } = precomputeCoeffs(width, outW);
    const rows = yLast - yFirst;
    const tmp = new Uint8Array(rows * outW * C);
    // Fixed tap count T per output pixel (zero weights added where a pixel has fewer taps; the start is moved left
    // at the right border so reads stay inside the row). Adding zero terms leaves Pillow's integer sums unchanged.
    let T = 0;
    for (let xx = 0; xx < outW; xx++) T = Math.max(T, bounds[xx * 2 + 1]!);
    T = Math.min(T, width);
    const start = new Int32Array(outW);
    const wt = new Int32Array(outW * T);
    for (let xx = 0; xx < outW; xx++) {
      const xmin = bounds[xx * 2]!;
      const n = bounds[xx * 2 + 1]!;
      const s0 = Math.min(xmin, width - T);
      start[xx] = s0 * C;
      for (let t = 0; t < n; t++) wt[xx * T + (xmin - s0) + t] = kk[xx * ksize + t]!;
    }
    const acc = new Int32Array(C);
    for (let yy = 0; yy < rows; yy++) {
      const inBase = (yy + yFirst) * width * C;
      let o = yy * outW * C;
      if (C === 3 && T === 4) {
        for (let xx = 0, q = 0; xx < outW; xx++, q += 4) {
          const p = inBase + start[xx]!;
          const w0 = wt[q]!, w1 = wt[q + 1]!, w2 = wt[q + 2]!, w3 = wt[q + 3]!;
          tmp[o++] = clip8((ONE_HALF + Math.imul(src[p]!, w0) + Math.imul(src[p + 3]!, w1) + Math.imul(src[p + 6]!, w2) + Math.imul(src[p + 9]!, w3)) | 0);
          tmp[o++] = clip8((ONE_HALF + Math.imul(src[p + 1]!, w0) + Math.imul(src[p + 4]!, w1) + Math.imul(src[p + 7]!, w2) + Math.imul(src[p + 10]!, w3)) | 0);
          tmp[o++] = clip8((ONE_HALF + Math.imul(src[p + 2]!, w0) + Math.imul(src[p + 5]!, w1) + Math.imul(src[p + 8]!, w2) + Math.imul(src[p + 11]!, w3)) | 0);
        }
      } else if (C === 3) {
        for (let xx = 0, q = 0; xx < outW; xx++, q += T) {
          let p = inBase + start[xx]!;
          let s0 = ONE_HALF, s1 = ONE_HALF, s2 = ONE_HALF;
          for (let t = 0; t < T; t++, p += 3) {
            const w = wt[q + t]!;
            s0 = (s0 + Math.imul(src[p]!, w)) | 0;
            s1 = (s1 + Math.imul(src[p + 1]!, w)) | 0;
            s2 = (s2 + Math.imul(src[p + 2]!, w)) | 0;
          }
          tmp[o++] = clip8(s0);
          tmp[o++] = clip8(s1);
          tmp[o++] = clip8(s2);
        }
      } else {
        for (let xx = 0, q = 0; xx < outW; xx++, q += T) {
          let p = inBase + start[xx]!;
          acc.fill(ONE_HALF);
          for (let t = 0; t < T; t++, p += C) {
            const w = wt[q + t]!;
            for (let c = 0; c < C; c++) acc[c] = (acc[c]! + Math.imul(src[p + c]!, w)) | 0;
          }
          for (let c = 0; c < C; c++) tmp[o++] = clip8(acc[c]!);
        }
      }
    }
    img = tmp;
    imgW = outW;
    rowOffset = yFirst;
  }
  if (!needV) return img;
  const out = new Uint8Array(outH * imgW * C);
  const rowLen = imgW * C;
  const { ksize, bounds, kk } = vert;
  const rowsUsed: number[] = [];
  const weights: number[] = [];
  let acc: Int32Array | undefined;
  for (let yy = 0; yy < outH; yy++) {
    const ymin = bounds[yy * 2]! - rowOffset;
    const ymax = bounds[yy * 2 + 1]!;
    rowsUsed.length = 0;
    weights.length = 0;
    for (let y = 0; y < ymax; y++) {
      const w = kk[yy * ksize + y]!;
      if (w !== 0) {
        rowsUsed.push((ymin + y) * rowLen);
        weights.push(w);
      }
    }
    const o = yy * rowLen;
    // Same integer sums as Pillow (zero-weight taps skipped), specialised by tap count.
    const n = weights.length;
    if (n === 2) {
      const [b0, b1] = rowsUsed as [number, number];
      const [w0, w1] = weights as [number, number];
      for (let i = 0; i < rowLen; i++) {
        out[o + i] = clip8((ONE_HALF + Math.imul(img[b0 + i]!, w0) + Math.imul(img[b1 + i]!, w1)) | 0);
      }
    } else if (n === 3) {
      const [b0, b1, b2] = rowsUsed as [number, number, number];
      const [w0, w1, w2] = weights as [number, number, number];
      for (let i = 0; i < rowLen; i++) {
        out[o + i] = clip8((ONE_HALF + Math.imul(img[b0 + i]!, w0) + Math.imul(img[b1 + i]!, w1) + Math.imul(img[b2 + i]!, w2)) | 0);
      }
    } else if (n === 4) {
      const [b0, b1, b2, b3] = rowsUsed as [number, number, number, number];
      const [w0, w1, w2, w3] = weights as [number, number, number, number];
      for (let i = 0; i < rowLen; i++) {
        out[o + i] = clip8(
          (ONE_HALF + Math.imul(img[b0 + i]!, w0) + Math.imul(img[b1 + i]!, w1) + Math.imul(img[b2 + i]!, w2) + Math.imul(img[b3 + i]!, w3)) | 0,
        );
      }
    } else {
      acc ??= new Int32Array(rowLen);
      acc.fill(ONE_HALF);
      for (let t = 0; t < n; t++) {
        const base = rowsUsed[t]!;
        const w = weights[t]!;
        for (let i = 0; i < rowLen; i++) acc[i] = (acc[i]! + Math.imul(img[base + i]!, w)) | 0;
      }
      for (let i = 0; i < rowLen; i++) out[o + i] = clip8(acc[i]!);
    }
  }
  return out;
}
