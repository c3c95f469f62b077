// Writing NIfTI-1 files for tests (the site daemon only reads them: client/src/data/nifti.ts).

export type NiftiDatatype = 'uint8' | 'int16' | 'uint16' | 'int32' | 'float32';

/**
 * Encode a minimal single-file NIfTI-1 (.nii, little endian; gzip it for .nii.gz), for test volumes.
 * `srow` is the 3x4 sform (default: diag(pixdim), origin 0); sform_code 1, qform_code 0.
 */
export function encodeNifti1(o: {
  dims: number[];
  data: ArrayLike<number>;
  datatype?: NiftiDatatype;
  pixdim?: number[];
  srow?: number[][];
  sclSlope?: number;
  sclInter?: number;
}): Uint8Array {
  const dt = o.datatype ?? 'uint8';
  const info: Record<NiftiDatatype, [number, number]> = { uint8: [2, 8], int16: [4, 16], uint16: [512, 16], int32: [8, 32], float32: [16, 32] };
  const [code, bitpix] = info[dt];
  const n = o.dims.reduce((a, b) => a * b, 1);
  if (o.data.length !== n) throw new RangeError(`data has ${o.data.length} values, dims ${o.dims.join('x')} need ${n}`);
  const bytes = bitpix / 8;
  const buf = new ArrayBuffer(352 + n * bytes);
  const dv = new DataView(buf);
  dv.setInt32(0, 348, true);
  dv.setInt16(40, o.dims.length, true);
  o.dims.forEach((d, i) => dv.setInt16(42 + 2 * i, d, true));
  dv.setInt16(70, code, true);
  dv.setInt16(72, bitpix, true);
  const pd = o.pixdim ?? o.dims.map(() => 1);
  dv.setFloat32(76, 1, true); // qfac
  pd.forEach((p, i) => dv.setFloat32(80 + 4 * i, p, true));
  dv.setFloat32(108, 352, true);
  dv.setFloat32(112, o.sclSlope ?? 1, true);
  dv.setFloat32(116, o.sclInter ?? 0, true);
  dv.setUint8(123, 2); // mm
  dv.setInt16(252, 0, true);
  dv.setInt16(254, 1, true);
  const srow = o.srow ?? [0, 1, 2].map((r) => [0, 1, 2, 3].map((c) => (c === r ? (pd[r] ?? 1) : 0)));
  srow.forEach((row, r) => row.forEach((v, c) => dv.setFloat32(280 + 16 * r + 4 * c, v, true)));
  [0x6e, 0x2b, 0x31, 0].forEach((b, i) => dv.setUint8(344 + i, b));
  for (let i = 0; i < n; i++) {
    const v = o.data[i]!, p = 352 + i * bytes;
    if (dt === 'uint8') dv.setUint8(p, v);
    else if (dt === 'int16') dv.setInt16(p, v, true);
    else if (dt === 'uint16') dv.setUint16(p, v, true);
    else if (dt === 'int32') dv.setInt32(p, v, true);
    else dv.setFloat32(p, v, true);
  }
  return new Uint8Array(buf);
}
