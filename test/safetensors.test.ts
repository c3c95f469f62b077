import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  bfloat16BitsToFloat32,
  decodeSafetensors,
  encodeSafetensors,
  float16BitsToFloat32,
  float32ToFloat16Bits,
  readSafetensors,
  readSafetensorsHeader,
  SafetensorsError,
  writeSafetensors,
  type HostTensor,
} from '../shared/src/safetensors.ts';

const FIXTURES = fileURLToPath(new URL('./fixtures/', import.meta.url));
let tmp: string;
before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'fedsam-st-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const f32 = (shape: number[], values: number[]): HostTensor => ({ dtype: 'float32', shape, data: Float32Array.from(values) });
const i32 = (shape: number[], values: number[]): HostTensor => ({ dtype: 'int32', shape, data: Int32Array.from(values) });
const u8 = (shape: number[], values: number[]): HostTensor => ({ dtype: 'uint8', shape, data: Uint8Array.from(values) });

/** Build a safetensors file by hand: header object + raw data bytes (header padded like the library). */
function rawFile(header: Record<string, unknown>, data: Uint8Array, opts: { pad?: boolean } = {}): Buffer {
  let h = Buffer.from(JSON.stringify(header));
  if (opts.pad !== false && h.length % 8) h = Buffer.concat([h, Buffer.alloc(8 - (h.length % 8), 0x20)]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  return Buffer.concat([len, h, data]);
}

function bytesOf(arr: ArrayBufferView): Uint8Array {
  return new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength);
}

async function headerJson(file: string): Promise<Record<string, any>> {
  const buf = await readFile(file);
  const n = Number(buf.readBigUInt64LE(0));
  assert.equal(n % 8, 0, 'header padded to a multiple of 8');
  return JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
}

describe('float16 / bfloat16 conversion', () => {
  test('float32 -> float16 bits: rounding, subnormals, overflow, specials', () => {
    const cases: Array<[number, number]> = [
      [0, 0x0000],
      [-0, 0x8000],
      [1, 0x3c00],
      [-2, 0xc000],
      [0.1, 0x2e66], // 0.0999755859375
      [1 / 3, 0x3555],
      [65504, 0x7bff], // max half
      [65519, 0x7bff], // rounds down
      [65520, 0x7c00], // tie -> even -> overflows to inf
      [1e6, 0x7c00],
      [-1e6, 0xfc00],
      [Infinity, 0x7c00],
      [-Infinity, 0xfc00],
      [2 ** -14, 0x0400], // smallest normal
      [2 ** -14 - 2 ** -24, 0x03ff], // largest subnormal
      [2 ** -24, 0x0001], // smallest subnormal
      [2 ** -25, 0x0000], // tie -> even (0)
      [2 ** -25 * 1.0000001, 0x0001], // just above the tie
      [3 * 2 ** -25, 0x0002], // tie 1.5 ulp -> even (2)
      [5 * 2 ** -25, 0x0002], // tie 2.5 ulp -> even (2)
      [2 ** -26, 0x0000],
      [1 + 2 ** -11, 0x3c00], // tie -> even (1.0)
      [1 + 3 * 2 ** -11, 0x3c02], // tie -> even (up)
      [1 + 2 ** -11 + 2 ** -20, 0x3c01], // above the tie
      [2048 + 1, 0x6800], // 2049 -> 2048 (tie, even)
      [2048 + 3, 0x6802], // 2051 -> 2052
    ];
    for (const [x, bits] of cases) {
      assert.equal(float32ToFloat16Bits(x).toString(16), bits.toString(16), `f16(${x})`);
    }
    const nan = float32ToFloat16Bits(NaN);
    assert.equal(nan & 0x7c00, 0x7c00);
    assert.notEqual(nan & 0x3ff, 0, 'NaN stays NaN');
  });

  test('float16 bits -> float32', () => {
    assert.equal(float16BitsToFloat32(0x3c00), 1);
    assert.equal(float16BitsToFloat32(0x2e66), 0.0999755859375);
    assert.equal(float16BitsToFloat32(0x7bff), 65504);
    assert.equal(float16BitsToFloat32(0x0001), 2 ** -24);
    assert.equal(float16BitsToFloat32(0x03ff), 2 ** -14 - 2 ** -24);
    assert.equal(float16BitsToFloat32(0x7c00), Infinity);
    assert.equal(float16BitsToFloat32(0xfc00), -Infinity);
    assert.ok(Number.isNaN(float16BitsToFloat32(0x7e00)));
    assert.ok(Object.is(float16BitsToFloat32(0x8000), -0));
    // every finite half survives half -> float -> half
    for (let h = 0; h < 0x10000; h++) {
      if ((h & 0x7c00) === 0x7c00 && h & 0x3ff) continue; // NaN payloads
      assert.equal(float32ToFloat16Bits(float16BitsToFloat32(h)), h);
    }
  });

  test('bfloat16 bits -> float32 (known values)', () => {
    const cases: Array<[number, number]> = [
      [0x3f80, 1],
      [0xc000, -2],
      [0x4049, 3.140625],
      [0x3dcd, 0.10009765625],
      [0x7f7f, 3.3895313892515355e38], // max bf16
      [0x0080, 2 ** -126],
      [0x0001, 2 ** -133], // smallest subnormal
      [0x7f80, Infinity],
      [0xff80, -Infinity],
    ];
    for (const [bits, x] of cases) assert.equal(bfloat16BitsToFloat32(bits), x, `bf16 0x${bits.toString(16)}`);
    assert.ok(Number.isNaN(bfloat16BitsToFloat32(0x7fc0)));
    assert.ok(Object.is(bfloat16BitsToFloat32(0x8000), -0));
  });
});

describe('write / read round trip', () => {
  test('F32, I32, U8, scalar and empty tensors, metadata, header layout', async () => {
    const tensors = new Map<string, HostTensor>([
      ['b.weight', f32([2, 3], [1, -2.5, 3.25, 1e-30, -0, 65536.5])],
      ['a.labels', i32([4], [1, 0, -1, -10])],
      ['c.mask', u8([2, 2], [0, 1, 255, 7])],
      ['a.scalar', f32([], [42])],
      ['z.empty', f32([0, 3], [])],
    ]);
    const file = join(tmp, 'rt.safetensors');
    await writeSafetensors(file, tensors, { metadata: { format: 'pt', note: 'hi' } });
    const { tensors: back, metadata } = await readSafetensors(file);
    assert.deepEqual(metadata, { format: 'pt', note: 'hi' });
    assert.equal(back.size, tensors.size);
    for (const [name, t] of tensors) {
      const r = back.get(name)!;
      assert.equal(r.dtype, t.dtype, name);
      assert.deepEqual(r.shape, t.shape, name);
      assert.deepEqual(bytesOf(r.data), bytesOf(t.data), name);
    }
    // python-library layout: __metadata__ first, then dtype (F32 > I32 > U8), then name
    const header = await headerJson(file);
    assert.deepEqual(Object.keys(header), ['__metadata__', 'a.scalar', 'b.weight', 'z.empty', 'a.labels', 'c.mask']);
    assert.deepEqual(header['b.weight'], { dtype: 'F32', shape: [2, 3], data_offsets: [4, 28] });
    assert.deepEqual(header['a.labels'].data_offsets, [28, 44]);
    // atomic write leaves no temp files behind
    assert.deepEqual((await readdir(tmp)).filter((f) => f.includes('.tmp-')), []);
  });

  test('default metadata is {format: pt}; encode/decode match write/read byte for byte', async () => {
    const tensors = new Map([['x', f32([3], [1, 2, 3])], ['y', i32([1], [5])]]);
    const file = join(tmp, 'enc.safetensors');
    await writeSafetensors(file, tensors);
    const onDisk = await readFile(file);
    assert.ok(encodeSafetensors(tensors).equals(onDisk));
    const { tensors: dec, metadata } = decodeSafetensors(onDisk);
    assert.deepEqual(metadata, { format: 'pt' });
    assert.deepEqual([...dec.get('x')!.data], [1, 2, 3]);
    assert.deepEqual([...dec.get('y')!.data], [5]);
    // decoded tensors own aligned buffers (not views into the input)
    assert.equal(dec.get('x')!.data.byteOffset, 0);
  });

  test('F16 write rounds to nearest even and reads back as float32', async () => {
    const values = [1, 0.1, 65519, 65520, 2 ** -25, 3 * 2 ** -25, 1 + 2 ** -11, -Infinity, 1e-10];
    const expected = [1, 0.0999755859375, 65504, Infinity, 0, 2 * 2 ** -24, 1, -Infinity, 0];
    const file = join(tmp, 'f16.safetensors');
    await writeSafetensors(
      file,
      new Map([
        ['w', f32([values.length], values)],
        ['n', i32([2], [3, 4])],
      ]),
      { float16: true },
    );
    const header = await headerJson(file);
    assert.equal(header.w.dtype, 'F16');
    assert.equal(header.n.dtype, 'I32');
    assert.deepEqual(Object.keys(header), ['__metadata__', 'n', 'w'], 'I32 sorts before F16 (python library order)');
    const { tensors } = await readSafetensors(file);
    const w = tensors.get('w')!;
    assert.equal(w.dtype, 'float32');
    assert.deepEqual([...w.data], expected);
    assert.deepEqual([...tensors.get('n')!.data], [3, 4]);
  });

  test('large F16/BF16 tensors convert chunk-wise with the right values', async () => {
    const n = (1 << 20) + 123; // crosses a conversion chunk
    const bits = new Uint16Array(n);
    for (let i = 0; i < n; i++) bits[i] = (i * 7919) & 0x7bff;
    const file = join(tmp, 'big16.safetensors');
    await writeFile(
      file,
      rawFile(
        { a: { dtype: 'F16', shape: [n], data_offsets: [0, 2 * n] }, b: { dtype: 'BF16', shape: [n], data_offsets: [2 * n, 4 * n] } },
        Buffer.concat([bytesOf(bits), bytesOf(bits)]),
      ),
    );
    const { tensors } = await readSafetensors(file);
    const a = tensors.get('a')!.data;
    const b = tensors.get('b')!.data;
    for (const i of [0, 1, 1000, (1 << 20) - 1, 1 << 20, n - 1]) {
      assert.equal(a[i], float16BitsToFloat32(bits[i]!));
      assert.equal(b[i], bfloat16BitsToFloat32(bits[i]!));
    }
  });

  test('other stored dtypes: BF16, F64, I64, I16, I8, U16, BOOL', async () => {
    const bf = Uint16Array.from([0x3f80, 0xc000, 0x4049, 0x7f80]);
    const f64 = Float64Array.from([0.1, -3, 1e300]);
    const i64 = BigInt64Array.from([0n, -1n, 2147483647n, -2147483648n]);
    const i16 = Int16Array.from([-32768, 7]);
    const i8 = Int8Array.from([-128, 127]);
    const u16 = Uint16Array.from([65535, 1]);
    const bool = Uint8Array.from([1, 0, 1]);
    const parts: Array<[string, string, number[], Uint8Array]> = [
      ['f64', 'F64', [3], bytesOf(f64)],
      ['i64', 'I64', [2, 2], bytesOf(i64)],
      ['bf', 'BF16', [4], bytesOf(bf)],
      ['i16', 'I16', [2], bytesOf(i16)],
      ['u16', 'U16', [2], bytesOf(u16)],
      ['i8', 'I8', [2], bytesOf(i8)],
      ['bool', 'BOOL', [3], bool],
    ];
    const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
    let off = 0;
    for (const [name, dtype, shape, b] of parts) {
      header[name] = { dtype, shape, data_offsets: [off, off + b.length] };
      off += b.length;
    }
    const buf = rawFile(header, Buffer.concat(parts.map((p) => p[3])));
    const file = join(tmp, 'dtypes.safetensors');
    await writeFile(file, buf);
    for (const { tensors } of [await readSafetensors(file), decodeSafetensors(buf)]) {
      assert.deepEqual([...tensors.get('bf')!.data], [1, -2, 3.140625, Infinity]);
      assert.equal(tensors.get('bf')!.dtype, 'float32');
      assert.deepEqual([...tensors.get('f64')!.data], [Math.fround(0.1), -3, Infinity]);
      assert.deepEqual([...tensors.get('i64')!.data], [0, -1, 2147483647, -2147483648]);
      assert.equal(tensors.get('i64')!.dtype, 'int32');
      assert.deepEqual(tensors.get('i64')!.shape, [2, 2]);
      assert.deepEqual([...tensors.get('i16')!.data], [-32768, 7]);
      assert.deepEqual([...tensors.get('i8')!.data], [-128, 127]);
      assert.deepEqual([...tensors.get('u16')!.data], [65535, 1]);
      assert.equal(tensors.get('bool')!.dtype, 'uint8');
      assert.deepEqual([...tensors.get('bool')!.data], [1, 0, 1]);
    }
  });

  test('filter reads only the selected tensors', async () => {
    const file = join(tmp, 'filter.safetensors');
    await writeSafetensors(file, new Map([['keep.a', f32([1], [1])], ['drop.b', f32([1], [2])]]));
    const { tensors } = await readSafetensors(file, { filter: (n) => n.startsWith('keep.') });
    assert.deepEqual([...tensors.keys()], ['keep.a']);
  });

  test('vendored tiny-box files: values, I32 inputs, and byte-identical re-encoding', async () => {
    const model = join(FIXTURES, 'tiny-box', 'model.safetensors');
    const header = await readSafetensorsHeader(model);
    assert.equal(header.entries.size, 174);
    assert.deepEqual(header.metadata, { format: 'pt' });
    const { tensors, metadata } = await readSafetensors(model);
    assert.deepEqual(tensors.get('mask_decoder.upscale_conv1.weight')!.shape, [32, 8, 2, 2]);
    assert.ok(encodeSafetensors(tensors, metadata).equals(await readFile(model)), 'same bytes as the python library');

    const inputs = await readSafetensors(join(FIXTURES, 'tiny-box', 'inputs.safetensors'));
    const labels = inputs.tensors.get('points.input_labels')!;
    assert.equal(labels.dtype, 'int32');
    assert.deepEqual([...labels.data], [1, 0, 0, 1]);
    assert.deepEqual([...inputs.tensors.get('box.input_boxes')!.data], [20, 30, 90, 100, 10, 50, 70, 120]);
    const padded = inputs.tensors.get('points_padded.input_labels')!;
    assert.deepEqual([...padded.data], [1, 0, 1, -10]);
  });
});

describe('validation errors', () => {
  const good = () =>
    rawFile({ __metadata__: { format: 'pt' }, a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } }, new Uint8Array(12));

  async function expectError(name: string, contents: Uint8Array, pattern: RegExp): Promise<void> {
    const file = join(tmp, `${name}.safetensors`);
    await writeFile(file, contents);
    for (const run of [() => readSafetensors(file), () => readSafetensorsHeader(file)]) {
      await assert.rejects(run, (e: unknown) => {
        assert.ok(e instanceof SafetensorsError, `${name}: expected SafetensorsError, got ${e}`);
        assert.match(e.message, pattern, name);
        assert.ok(e.message.includes(file), `${name}: message names the file: ${e.message}`);
        return true;
      });
    }
    assert.throws(() => decodeSafetensors(contents, 'buf'), (e: unknown) => e instanceof SafetensorsError && pattern.test(e.message));
  }

  const withLength = (n: bigint, rest: Uint8Array) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(n);
    return Buffer.concat([b, rest]);
  };

  test('the good file reads', async () => {
    const file = join(tmp, 'good.safetensors');
    await writeFile(file, good());
    assert.equal((await readSafetensors(file)).tensors.size, 2);
  });

  test('file shorter than 8 bytes', async () => {
    await expectError('empty', new Uint8Array(0), /shorter than the 8-byte/);
    await expectError('short', new Uint8Array(5), /5 bytes, shorter than the 8-byte/);
  });

  test('header length larger than the file', async () => {
    await expectError('hdrlong', withLength(1000n, Buffer.from('{}')), /header length 1000 bytes but the file has only 2/);
  });

  test('absurd header length', async () => {
    await expectError('absurd', withLength(2n ** 62n, Buffer.from('{}')), /absurd/);
    await expectError('absurd2', withLength(0xffffffffffffffffn, Buffer.from('{}')), /absurd/);
  });

  test('header not JSON / not an object', async () => {
    await expectError('notjson', withLength(8n, Buffer.from('{"a": 1 ')), /not valid UTF-8 JSON/);
    await expectError('array', withLength(8n, Buffer.from('[1,2]   ')), /expected a JSON object/);
    await expectError('pickle', Buffer.from([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8]), /absurd|header length/);
  });

  test('unknown dtype', async () => {
    await expectError('dtype', rawFile({ a: { dtype: 'F31', shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4)), /tensor "a" has unknown dtype "F31"/);
  });

  test('known but unsupported dtype fails only when read', async () => {
    const buf = rawFile({ a: { dtype: 'F8_E4M3', shape: [4], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, new Uint8Array(8));
    const file = join(tmp, 'f8.safetensors');
    await writeFile(file, buf);
    assert.equal((await readSafetensors(file, { filter: (n) => n === 'b' })).tensors.size, 1);
    await assert.rejects(() => readSafetensors(file), (e: unknown) => e instanceof SafetensorsError && /F8_E4M3, which is not supported/.test(e.message));
  });

  test('I64 values outside int32', async () => {
    const buf = rawFile({ a: { dtype: 'I64', shape: [2], data_offsets: [0, 16] } }, bytesOf(BigInt64Array.from([1n, 2n ** 40n])));
    const file = join(tmp, 'i64big.safetensors');
    await writeFile(file, buf);
    await assert.rejects(() => readSafetensors(file), (e: unknown) => e instanceof SafetensorsError && /element 1 = 1099511627776 does not fit in int32/.test(e.message));
  });

  test('shape / byte count mismatch', async () => {
    await expectError('count', rawFile({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, new Uint8Array(8)), /8 data bytes .* needs 12/);
  });

  test('invalid shape, offsets, metadata', async () => {
    await expectError('shape', rawFile({ a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, new Uint8Array(4)), /invalid shape/);
    await expectError('shape2', rawFile({ a: { dtype: 'F32', shape: '4', data_offsets: [0, 4] } }, new Uint8Array(4)), /invalid shape/);
    await expectError('offs', rawFile({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 0] } }, new Uint8Array(4)), /invalid data_offsets/);
    await expectError('offs2', rawFile({ a: { dtype: 'F32', shape: [1] } }, new Uint8Array(4)), /invalid data_offsets/);
    await expectError('meta', rawFile({ __metadata__: { format: 1 }, a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, new Uint8Array(4)), /__metadata__/);
  });

  test('offsets outside the data region', async () => {
    await expectError('outside', rawFile({ a: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, new Uint8Array(8)), /"a" data_offsets \[4, 12\] lie outside the data region \(8 bytes/);
  });

  test('overlapping tensors', async () => {
    await expectError(
      'overlap',
      rawFile({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] } }, new Uint8Array(12)),
      /"a" \[0, 8\] and "b" \[4, 12\] overlap/,
    );
  });

  test('truncated file', async () => {
    const whole = await readFile(join(FIXTURES, 'tiny-box', 'model.safetensors'));
    await expectError('trunc', whole.subarray(0, whole.length - 100), /truncated/);
    await expectError('trunc-header', whole.subarray(0, 1000), /truncated/);
  });

  test('missing file', async () => {
    await assert.rejects(() => readSafetensors(join(tmp, 'nope.safetensors')), (e: unknown) => e instanceof SafetensorsError && /nope\.safetensors: cannot open .*ENOENT/.test(e.message));
  });

  test('writing invalid tensors fails before touching the target', async () => {
    const file = join(tmp, 'badwrite.safetensors');
    await assert.rejects(
      () => writeSafetensors(file, new Map([['a', f32([2, 2], [1, 2, 3])]])),
      (e: unknown) => e instanceof SafetensorsError && /"a" has 3 elements but shape \[2, 2\] needs 4/.test(e.message),
    );
    await assert.rejects(
      () => writeSafetensors(file, new Map([['a', { dtype: 'float32', shape: [1], data: Int32Array.from([1]) } as HostTensor]])),
      (e: unknown) => e instanceof SafetensorsError && /says dtype float32 but holds a Int32Array/.test(e.message),
    );
    await assert.rejects(() => writeSafetensors(join(tmp, 'no-such-dir', 'x.safetensors'), new Map([['a', f32([1], [1])]])), SafetensorsError);
    assert.deepEqual((await readdir(tmp)).filter((f) => f.includes('badwrite')), []);
  });
});
