// A small ONNX graph builder: named inputs/outputs, initializers (HF weight names kept), constants and nodes, and the
// serialisation to a ModelProto, either self-contained (one buffer, for small graphs built in memory) or with the
// large initializers in an external data file beside the model (what ORT reads for the ViT encoders: protobuf messages
// are limited to 2 GB, and the weights are streamed to disk instead of being copied into one buffer).
import { open } from 'node:fs/promises';
import { basename } from 'node:path';
import { ModelProto, DataType, AttributeType, DATA_LOCATION_EXTERNAL, type DataTypeName } from './schema.ts';

export type Dim = number | string;
export type TensorData = Float32Array | Int32Array | BigInt64Array | Uint8Array;

export interface Initializer { name: string; dims: number[]; type: DataTypeName; data: TensorData }

/** A float attribute (plain numbers are INT attributes). */
export interface FloatAttr { f: number }
export const float = (f: number): FloatAttr => ({ f });
export type AttrValue = number | number[] | string | FloatAttr | { floats: number[] };

interface Node { opType: string; domain: string; inputs: string[]; outputs: string[]; name: string; attrs: Record<string, AttrValue> }
interface ValueInfo { name: string; type: DataTypeName; dims: Dim[] }

/** Opset versions the graphs are written for: ONNX 17 (LayerNormalization), Microsoft contrib ops 1. */
export const OPSETS: Record<string, number> = { '': 17, 'com.microsoft': 1 };
const IR_VERSION = 8;

export class GraphBuilder {
  readonly nodes: Node[] = [];
  readonly initializers: Initializer[] = [];
  readonly inputs: ValueInfo[] = [];
  readonly outputs: ValueInfo[] = [];
  private readonly names = new Set<string>();
  private counter = 0;
  readonly metadata: Record<string, string> = {};

  constructor(readonly name: string) {}

  private fresh(stem: string): string {
    let n: string;
    do n = `${stem}_${this.counter++}`; while (this.names.has(n));
    this.names.add(n);
    return n;
  }

  private claim(name: string): string {
    if (this.names.has(name)) throw new Error(`ONNX graph ${this.name}: the name ${name} is used twice`);
    this.names.add(name);
    return name;
  }

  input(name: string, type: DataTypeName, dims: Dim[]): string {
    this.inputs.push({ name: this.claim(name), type, dims });
    return name;
  }

  /** Declare `value` (a name produced by a node) as a graph output called `name` (an Identity when they differ). */
  output(name: string, value: string, type: DataTypeName, dims: Dim[]): void {
    if (value !== name) this.op('Identity', [value], {}, { out: name });
    this.outputs.push({ name, type, dims });
  }

  initializer(name: string, type: DataTypeName, dims: number[], data: TensorData, named = false): string {
    const n = dims.reduce((a, b) => a * b, 1);
    if (data.length !== n) throw new Error(`ONNX initializer ${name}: ${data.length} values for shape [${dims}]`);
    this.initializers.push({ name: named ? name : this.claim(name), dims, type, data });
    return name;
  }

  /** A float32 constant (an initializer with a generated name). */
  constF(values: ArrayLike<number>, dims: number[] = [values.length], stem = 'const'): string {
    return this.initializer(this.fresh(stem), 'FLOAT', dims, Float32Array.from(values), true);
  }

  /** An int64 constant (shapes, axes, indices). */
  constI64(values: readonly number[], dims: number[] = [values.length]): string {
    return this.initializer(this.fresh('i64'), 'INT64', dims, BigInt64Array.from(values.map((v) => BigInt(v))), true);
  }

  /** Add a node with one output; returns the output's name. */
  op(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}, o: { domain?: string; out?: string; name?: string } = {}): string {
    return this.opN(opType, inputs, 1, attrs, { ...o, out: o.out ? [o.out] : undefined })[0];
  }

  /** Add a node with `n` outputs. */
  opN(opType: string, inputs: string[], n: number, attrs: Record<string, AttrValue> = {}, o: { domain?: string; out?: string[]; name?: string } = {}): string[] {
    const outputs = o.out ? o.out.map((x) => this.claim(x)) : Array.from({ length: n }, () => this.fresh(o.name ?? opType));
    this.nodes.push({ opType, domain: o.domain ?? '', inputs, outputs, name: this.fresh(`n_${opType}`), attrs });
    return outputs;
  }

  // --- serialisation ---------------------------------------------------------------------------------------------

  private modelObject(tensor: (t: Initializer) => Record<string, unknown>): Record<string, unknown> {
    const domains = new Set(this.nodes.map((n) => n.domain));
    domains.add('');
    return {
      irVersion: IR_VERSION,
      producerName: 'fedsam',
      producerVersion: '1',
      opsetImport: [...domains].map((d) => ({ domain: d, version: OPSETS[d] ?? 1 })),
      metadataProps: Object.entries(this.metadata).map(([key, value]) => ({ key, value })),
      graph: {
        name: this.name,
        node: this.nodes.map((n) => ({ input: n.inputs, output: n.outputs, name: n.name, opType: n.opType, domain: n.domain, attribute: Object.entries(n.attrs).map(([k, v]) => attribute(k, v)) })),
        initializer: this.initializers.map(tensor),
        input: this.inputs.map(valueInfo),
        output: this.outputs.map(valueInfo),
      },
    };
  }

  /** The whole model in one buffer (initializers inline). */
  encode(): Uint8Array {
    return ModelProto.encode(ModelProto.fromObject(this.modelObject((t) => ({ name: t.name, dims: t.dims, dataType: DataType[t.type], rawData: bytesOf(t.data) })))).finish();
  }

  /**
   * Write `modelFile` with initializers of `externalMinBytes` bytes or more in `dataFile` (same folder; 64-byte
   * aligned so ORT can map them), streamed tensor by tensor. Both paths may be temporary names: the model refers to
   * the data file by `dataName` (default: basename(dataFile)).
   */
  async writeWithExternalData(modelFile: string, dataFile: string, o: { dataName?: string; externalMinBytes?: number } = {}): Promise<{ modelBytes: number; dataBytes: number }> {
    const min = o.externalMinBytes ?? 1024;
    const location = o.dataName ?? basename(dataFile);
    const placed = new Map<Initializer, { offset: number; length: number }>();
    const fh = await open(dataFile, 'w');
    let offset = 0;
    try {
      for (const t of this.initializers) {
        const bytes = bytesOf(t.data);
        if (bytes.byteLength < min) continue;
        const aligned = Math.ceil(offset / 64) * 64;
        if (aligned > offset) await fh.write(new Uint8Array(aligned - offset));
        await fh.write(bytes);
        placed.set(t, { offset: aligned, length: bytes.byteLength });
        offset = aligned + bytes.byteLength;
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
    const model = ModelProto.encode(ModelProto.fromObject(this.modelObject((t) => {
      const p = placed.get(t);
      const base = { name: t.name, dims: t.dims, dataType: DataType[t.type] };
      if (!p) return { ...base, rawData: bytesOf(t.data) };
      return {
        ...base, dataLocation: DATA_LOCATION_EXTERNAL,
        externalData: [{ key: 'location', value: location }, { key: 'offset', value: String(p.offset) }, { key: 'length', value: String(p.length) }],
      };
    }))).finish();
    const mh = await open(modelFile, 'w');
    try {
      await mh.write(model);
      await mh.sync();
    } finally {
      await mh.close();
    }
    return { modelBytes: model.byteLength, dataBytes: offset };
  }
}

function valueInfo(v: ValueInfo): Record<string, unknown> {
  return {
    name: v.name,
    type: { tensorType: { elemType: DataType[v.type], shape: { dim: v.dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } },
  };
}

function attribute(name: string, v: AttrValue): Record<string, unknown> {
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) throw new Error(`attribute ${name}: ${v} is not an integer (use float() for FLOAT attributes)`);
    return { name, type: AttributeType.INT, i: v };
  }
  if (typeof v === 'string') return { name, type: AttributeType.STRING, s: new TextEncoder().encode(v) };
  if (Array.isArray(v)) return { name, type: AttributeType.INTS, ints: v };
  if ('floats' in v) return { name, type: AttributeType.FLOATS, floats: v.floats };
  return { name, type: AttributeType.FLOAT, f: v.f };
}

/** Little-endian bytes of a typed array (a view, no copy; this platform is little-endian like ONNX raw_data). */
function bytesOf(a: TensorData): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}
