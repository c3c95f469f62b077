// Aggregation strategies: math checked against independent / hand computations.
import { roundRetryDelayS } from '@fedsam/server/roundRetry';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { HostTensor } from '@fedsam/shared/safetensors';
import { createStrategy, fedAdamEta, FLOWER_FEDADAM_ETA, StrategyConfigSchema, STRATEGY_NAMES, type FitRes, type StrategyConfigInput } from '@fedsam/server/strategy/index';
import { ServerConfigSchema } from '@fedsam/server/config';
import {
  AggregationError, coordinateMedian, fedAvg, fedAvgMStep, fedOptStep, trimmedMean, weightedMetrics, type NamedTensors,
} from '@fedsam/server/strategy/aggregate';
import { FOLD_BATCH, WeightedSum } from '@fedsam/server/strategy/weightedSum';
import { foldArena } from '@fedsam/server/strategy/foldArena';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { decodePayload, encodeTransfer, findNonFinite } from '@fedsam/shared/transfer/codec';
import { referenceFedAvg, tinyDecoder } from './helpers/fake-engine.ts';
import { assertClose } from './helpers/fed-harness.ts';

const t = (...v: number[]): HostTensor => ({ dtype: 'float32', shape: [v.length], data: Float32Array.from(v) });
const one = (...v: number[]): NamedTensors => new Map([['mask_decoder.w', t(...v)]]);
const vals = (m: NamedTensors, name = 'mask_decoder.w') => [...(m.get(name)!.data as Float32Array)];
const f32 = (x: number) => Math.fround(x);
/** An update as the coordinator hands it to a strategy. */
const res = (site: string, weights: NamedTensors, numExamples: number, release?: () => void, metrics: Record<string, number> = {}): FitRes =>
  ({ site, weights, numExamples, weight: numExamples, metrics, release });

test('FedAvg equals an independent float64 weighted mean', () => {
  const updates = [1, 2, 3, 4].map((s, i) => ({ weights: tinyDecoder(100 + s), numExamples: [3, 17, 1, 250][i]! }));
  const got = fedAvg(updates);
  const ref = referenceFedAvg(updates);
  for (const [n, r] of ref) assertClose(got.get(n)!.data as Float32Array, r, n);
  // streaming (fold in one at a time, any order) gives the same result
  const ws = new WeightedSum(updates[0]!.weights);
  for (const u of [...updates].reverse()) ws.add(u.weights, u.numExamples);
  for (const [n, r] of ref) assertClose(ws.mean().get(n)!.data as Float32Array, r, `streamed ${n}`);
  assert.equal(ws.count, 4);
  assert.equal(ws.totalWeight, 271);
});

test('FedAvg as the server feeds it: uploads received into the fold arena, release() only once an update is no longer read', () => {
  const updates = [5, 6, 7, 8, 9, 10].map((s, i) => ({ weights: tinyDecoder(200 + s), numExamples: [4, 9, 1, 30, 2, 7][i]! }));
  const ref = referenceFedAvg(updates);
  const arena = foldArena();
  for (const strategyName of ['fedavg', 'median'] as const) {
    for (let round = 1; round <= 2; round++) {
      // each update arrives as one wire payload in a receive buffer (tensors = views of it), like an upload
      const received = updates.map((u) => {
        const enc = encodeTransfer(u.weights);
        const payload = strategyName === 'fedavg' ? arena.bytes(enc.payload.length) : new Uint8Array(enc.payload.length);
        payload.set(enc.payload);
        return { payload, weights: decodePayload(enc.manifest, payload), numExamples: u.numExamples };
      });
      const strategy = createStrategy({ name: strategyName });
      const agg = strategy.aggregateFit(round, updates[0]!.weights);
      const released: number[] = [];
      received.forEach((r, i) => {
        // the arena would hand the buffer to the next upload: scribble over it to catch any later read
        agg.add(res(`s${i}`, r.weights, r.numExamples, () => {
          released.push(i);
          r.payload.fill(0xff);
          if (strategyName === 'fedavg') arena.give(r.payload);
        }));
        // held until FOLD_BATCH wait, then summed in one pass when the next arrives
        if (strategyName === 'fedavg') assert.deepEqual(released, i < FOLD_BATCH ? [] : [...Array(FOLD_BATCH).keys()], `after update ${i}`);
      });
      const out = agg.finish().weights;
      assert.deepEqual(released.sort(), [0, 1, 2, 3, 4, 5]);
      if (strategyName === 'fedavg') for (const [n, r] of ref) assertClose(out.get(n)!.data as Float32Array, r, `round ${round} ${n}`);
      else for (const t of out.values()) assert.ok(!findNonFinite(new Map([['x', t]])), 'median read no released buffer');
    }
  }
});

test('FedAvg copies updates that are not in the fold arena and releases them at once', () => {
  const updates = [1, 2, 3].map((s) => ({ weights: tinyDecoder(300 + s), numExamples: s }));
  const ws = new WeightedSum(updates[0]!.weights);
  const released: number[] = [];
  updates.forEach((u, i) => ws.add(u.weights, u.numExamples, () => released.push(i)));
  assert.deepEqual(released, [0, 1, 2]);
  // the caller may reuse its arrays at once
  for (const u of updates) for (const t of u.weights.values()) (t.data as Float32Array).fill(NaN);
  for (const [n, r] of referenceFedAvg(updates.map((u, i) => ({ weights: tinyDecoder(301 + i), numExamples: u.numExamples })))) {
    assertClose(ws.mean().get(n)!.data as Float32Array, r, n);
  }
});

test('the fold kernel equals a float64 reference for every K, tail length and in-place output, on one and two threads', async () => {
  const arena = foldArena();
  // long runs are split with the helper thread once it has started (on a machine with two cores)
  for (let i = 0; i < 500 && availableParallelism() > 1 && arena.threads < 2; i++) await new Promise((r) => setTimeout(r, 10));
  if (availableParallelism() > 1) assert.equal(arena.threads, 2);
  let seed = 7;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 2 - 1;
  for (const n of [1, 7, 8, 9, 63, 1000, 4099, 200_003]) {
    for (const k of [1, 2, 3, 5, 9]) {
      const xs = Array.from({ length: k }, () => {
        const x = arena.f32(n);
        for (let i = 0; i < n; i++) x[i] = rnd() * 10;
        return x;
      });
      const ws = xs.map((_, j) => 1 + j * 3.5);
      const acc = arena.f64(n);
      for (let i = 0; i < n; i++) acc[i] = rnd();
      const before = Float64Array.from(acc);
      const expect = (i: number, withAcc: boolean) => {
        let s = withAcc ? before[i]! : 0;
        for (let j = 0; j < k; j++) s += ws[j]! * xs[j]![i]!;
        return s;
      };
      arena.accumulate(acc, true, xs, ws);
      for (let i = 0; i < n; i++) assert.equal(acc[i], expect(i, true), `accumulate add n=${n} k=${k} i=${i}`);
      arena.accumulate(acc, false, xs, ws);
      for (let i = 0; i < n; i++) assert.equal(acc[i], expect(i, false), `accumulate first n=${n} k=${k} i=${i}`);
      acc.set(before);
      const snapshot = xs.map((x) => Float32Array.from(x));
      const ref = (i: number) => {
        let s = before[i]!;
        for (let j = 0; j < k; j++) s += ws[j]! * snapshot[j]![i]!;
        return Math.fround(s * 0.125);
      };
      arena.scaledSum(xs[0]!, acc, xs, ws, 0.125); // in place over the first update
      for (let i = 0; i < n; i++) assert.equal(xs[0]![i], ref(i), `scaledSum n=${n} k=${k} i=${i}`);
      for (const x of xs) arena.give(x);
      arena.give(acc);
    }
  }
  // blocks come back for reuse; views from before the memory grew stay valid
  const a = arena.f32(1000);
  a[999] = 42;
  const big = arena.f64(3_000_000);
  big[0] = 1;
  assert.equal(a[999], 42);
  assert.ok(arena.addressOf(a) >= 0 && arena.addressOf(new Float32Array(4)) === -1);
  arena.give(big);
  const again = arena.f64(3_000_000);
  assert.equal(arena.addressOf(again), arena.addressOf(big));
  arena.give(again);
  arena.give(a);
  assert.throws(() => arena.give(a), /not the start of an arena block/);
});

test('fold.wasm is what fold.wat compiles to', async () => {
  const { compileFold } = await import('../server/scripts/wat2wasm.mjs');
  const committed = readFileSync(new URL('../server/src/strategy/fold.wasm', import.meta.url));
  assert.ok((await compileFold()).equals(committed), 'fold.wasm is stale: run npm run build:wasm');
});

test('FedAvg and FedAdam write a new global into the buffer of one the coordinator gave back, never into a live one', () => {
  for (const name of ['fedavg', 'fedadam'] as const) {
    const strategy = createStrategy({ name, ...(name === 'fedadam' ? { eta: FLOWER_FEDADAM_ETA } : {}) } as StrategyConfigInput);
    let global = tinyDecoder(1);
    const run = (round: number, seed: number) => {
      const agg = strategy.aggregateFit(round, global);
      agg.add(res('a', tinyDecoder(seed), 1));
      global = agg.finish().weights;
      return global;
    };
    const bufferOf = (g: NamedTensors) => g.values().next().value!.data.buffer;
    const g1 = run(1, 11);
    const g2 = run(2, 12);
    assert.notEqual(bufferOf(g2), bufferOf(g1), `${name}: g1 is still the live global while round 2 runs`);
    const kept2 = [...g2].map(([n, t]) => [n, Float32Array.from(t.data as Float32Array)] as const);
    strategy.aggregator.recycle(g1);
    const g3 = run(3, 13);
    assert.equal(bufferOf(g3), bufferOf(g1), `${name}: round 3 reuses the given-back buffer`);
    for (const [n, v] of kept2) assert.deepEqual(g2.get(n)!.data, v, `${name}: g2 ${n} untouched`);
    if (name === 'fedavg') {
      for (const [n, r] of referenceFedAvg([{ weights: tinyDecoder(13), numExamples: 1 }])) assertClose(g3.get(n)!.data as Float32Array, r, n);
    }
  }
});

test('an abandoned round releases what it holds; its sum takes no more updates', () => {
  const arena = foldArena();
  const strategy = createStrategy({ name: 'fedavg' });
  const agg = strategy.aggregateFit(1, tinyDecoder(1));
  const released: number[] = [];
  for (let i = 0; i < FOLD_BATCH + 2; i++) {
    const enc = encodeTransfer(tinyDecoder(20 + i));
    const payload = arena.bytes(enc.payload.length);
    payload.set(enc.payload);
    agg.add(res(`s${i}`, decodePayload(enc.manifest, payload), 1, () => released.push(i)));
  }
  assert.equal(released.length, FOLD_BATCH, 'one batch summed, two updates held');
  agg.abandon();
  assert.deepEqual(released.sort(), [...Array(FOLD_BATCH + 2).keys()]);
  assert.throws(() => agg.add(res('late', tinyDecoder(3), 1)), /closed/);
  assert.throws(() => agg.finish(), /discarded/);
});

test('FedAvg accumulates in float64 (no float32 cancellation)', () => {
  // 1e8 + 1 - 1e8 would be 0 in float32 accumulation
  const got = fedAvg([
    { weights: one(1e8), numExamples: 1 },
    { weights: one(1), numExamples: 1 },
    { weights: one(-1e8), numExamples: 1 },
  ]);
  assert.deepEqual(vals(got), [f32(1 / 3)]);
});

test('WeightedSum refuses bad layouts and weights', () => {
  const ws = new WeightedSum(one(1, 2));
  assert.throws(() => ws.add(one(1, 2, 3), 1), AggregationError);
  assert.throws(() => ws.add(new Map([['mask_decoder.v', t(1, 2)]]), 1), /missing/);
  assert.throws(() => ws.add(one(1, 2), 0), /positive/);
  assert.throws(() => ws.mean(), /no update/);
});

test('FedAdam: one and two steps match the hand computation (Flower semantics; Flower\'s defaults but for eta)', () => {
  const cfg = StrategyConfigSchema.parse({ name: 'fedadam' });
  assert.deepEqual(cfg, { name: 'fedadam', beta_1: 0.9, beta_2: 0.99, tau: 1e-9 });
  const p = { eta: FLOWER_FEDADAM_ETA, beta_1: 0.9, beta_2: 0.99, tau: 1e-9 };
  const x = [1, -2, 0.5];
  const agg1 = [1.5, -2.5, 0.5];
  const s1 = fedOptStep('adam', one(...x), one(...agg1), undefined, p, 1);
  // by hand: delta = agg - x; m = 0.1 delta; v = 0.01 delta^2; eta_norm = eta sqrt(1 - 0.99^2) / (1 - 0.9^2)
  const etaNorm1 = (0.1 * Math.sqrt(1 - 0.99 ** 2)) / (1 - 0.9 ** 2);
  const m1 = [0.05, -0.05, 0].map(f32);
  const v1 = [0.0025, 0.0025, 0].map(f32);
  assert.deepEqual(vals(s1.moments.m), m1);
  assert.deepEqual(vals(s1.moments.v), v1);
  const w1 = x.map((xi, i) => f32(xi + (etaNorm1 * m1[i]!) / (Math.sqrt(v1[i]!) + 1e-9)));
  assert.deepEqual(vals(s1.weights), w1);
  assert.ok(Math.abs(w1[0]! - (1 + etaNorm1)) < 1e-6); // ~ x + eta_norm sign(delta)

  const agg2 = [w1[0]! + 0.1, w1[1]!, w1[2]! - 0.2];
  const s2 = fedOptStep('adam', s1.weights, one(...agg2), s1.moments, p, 2);
  const d2 = agg2.map((a, i) => f32(a) - w1[i]!);
  const m2 = m1.map((m, i) => f32(0.9 * m + 0.1 * d2[i]!));
  const v2 = v1.map((v, i) => f32(0.99 * v + 0.01 * d2[i]! * d2[i]!));
  const etaNorm2 = (0.1 * Math.sqrt(1 - 0.99 ** 3)) / (1 - 0.9 ** 3);
  const w2 = w1.map((wi, i) => f32(wi + (etaNorm2 * m2[i]!) / (Math.sqrt(v2[i]!) + 1e-9)));
  assert.deepEqual(vals(s2.moments.m), m2);
  assert.deepEqual(vals(s2.moments.v), v2);
  assert.deepEqual(vals(s2.weights), w2);
});

test('FedYogi: one and two steps match the hand computation (Flower semantics and defaults)', () => {
  const cfg = StrategyConfigSchema.parse({ name: 'fedyogi' });
  assert.deepEqual(cfg, { name: 'fedyogi', eta: 0.01, beta_1: 0.9, beta_2: 0.99, tau: 1e-3 });
  const p = { eta: 0.01, beta_1: 0.9, beta_2: 0.99, tau: 1e-3 };
  const x = [0.2, 0.4];
  const s1 = fedOptStep('yogi', one(...x), one(0.6, 0.4), undefined, p, 1);
  // delta = [0.4, 0]; m = 0.1 delta; v = 0 - 0.01 delta^2 sign(0 - delta^2) = 0.01 delta^2; no bias correction
  const d1 = f32(0.6) - f32(0.2); // the float32 inputs' difference
  const m1 = [f32(0.1 * d1), 0];
  const v1 = [f32(0.01 * d1 * d1), 0];
  assert.deepEqual(vals(s1.moments.m), m1);
  assert.deepEqual(vals(s1.moments.v), v1);
  const w1 = [f32(f32(0.2) + (0.01 * m1[0]!) / (Math.sqrt(v1[0]!) + 1e-3)), f32(0.4)];
  assert.deepEqual(vals(s1.weights), w1);

  // second step with a tiny delta: delta^2 < v, so sign(v - delta^2) = +1 and v shrinks
  const agg2 = [w1[0]! + 0.001, w1[1]! + 0.3];
  const s2 = fedOptStep('yogi', s1.weights, one(...agg2), s1.moments, p, 2);
  const d = agg2.map((a, i) => f32(a) - w1[i]!);
  const v2 = [f32(v1[0]! - 0.01 * d[0]! ** 2 * 1), f32(v1[1]! - 0.01 * d[1]! ** 2 * -1)];
  const m2 = m1.map((m, i) => f32(0.9 * m + 0.1 * d[i]!));
  assert.deepEqual(vals(s2.moments.v), v2);
  assert.ok(v2[0]! < v1[0]!);
  assert.deepEqual(vals(s2.weights), w1.map((wi, i) => f32(wi + (0.01 * m2[i]!) / (Math.sqrt(v2[i]!) + 1e-3))));
});

test('FedAdam strategy: streaming FedAvg then the optimizer step; state survives save/load', () => {
  const global = tinyDecoder(5);
  const rounds = [1, 2].map((r) => [1, 2, 3].map((k) => res(`s${k}`, tinyDecoder(10 * r + k), k * 2)));
  const a = createStrategy({ name: 'fedadam', eta: 0.05 });
  let g = global;
  for (const [i, ups] of rounds.entries()) {
    const agg = a.aggregateFit(i + 1, g);
    for (const u of ups) agg.add(u);
    const next = agg.finish().weights;
    if (i === 0) {
      const expected = fedOptStep('adam', g, fedAvg(ups), undefined, { eta: 0.05, beta_1: 0.9, beta_2: 0.99, tau: 1e-9 }, 1);
      for (const [n, e] of expected.weights) assert.deepEqual(next.get(n)!.data, e.data);
    }
    g = next;
  }
  // resume: a fresh strategy restored from round 1's state reaches the same round-2 result
  const b = createStrategy({ name: 'fedadam', eta: 0.05 });
  const r1 = b.aggregateFit(1, global);
  for (const u of rounds[0]!) r1.add(u);
  const g1 = r1.finish().weights;
  const c = createStrategy({ name: 'fedadam', eta: 0.05 });
  c.loadState(b.saveState());
  const r2 = c.aggregateFit(2, g1);
  for (const u of rounds[1]!) r2.add(u);
  const g2 = r2.finish().weights;
  for (const [n, tt] of g) assert.deepEqual(g2.get(n)!.data, tt.data, n);
});

test('FedProx sends proximal_mu; server side is FedAvg', () => {
  const s = createStrategy({ name: 'fedprox', proximal_mu: 0.3 });
  const [ins] = s.configureFit(1, { available: ['a'], attempt: 1 });
  assert.equal(ins!.ins.config.proximal_mu, 0.3);
  assert.deepEqual(ins!.ins.config.params, { proximal_mu: 0.3 });
  const ups = [res('a', one(1, 2), 1), res('b', one(3, 6), 3)];
  const agg = s.aggregateFit(1, one(0, 0));
  for (const u of ups) agg.add(u);
  assert.deepEqual(vals(agg.finish().weights), [2.5, 5]);
  const plain = createStrategy({ name: 'fedavg' }).configureFit(1, { available: ['a'], attempt: 1 })[0]!.ins.config;
  assert.equal(plain.proximal_mu, 0);
  assert.deepEqual(plain.params, {});
});

test('coordinate-wise median (odd and even K) and trimmed mean', () => {
  const u = [one(1, 10, -1), one(5, 20, -2), one(3, -30, -3)];
  assert.deepEqual(vals(coordinateMedian(u)), [3, 10, -2]);
  assert.deepEqual(vals(coordinateMedian([...u, one(4, 0, 100)])), [3.5, 5, -1.5]);
  const five = [one(1, 0), one(2, 0), one(3, 0), one(4, 0), one(100, 5)];
  // beta 0.2 of 5: drop the lowest and highest value of each coordinate
  assert.deepEqual(vals(trimmedMean(five, 0.2)), [3, 0]);
  // beta 0.2 of 4: floor(0.8) = 0 trimmed: plain mean
  assert.deepEqual(vals(trimmedMean(five.slice(0, 4), 0.2)), [2.5, 0]);
  assert.throws(() => trimmedMean(five, 0.5), /beta/);
  const s = createStrategy({ name: 'median' });
  assert.equal(s.aggregator.holding, 'kept');
  assert.equal(createStrategy({ name: 'fedavg' }).aggregator.holding, 'streamed');
  const agg = s.aggregateFit(1, one(0, 0, 0));
  u.forEach((w, i) => agg.add(res(`s${i}`, w, 100 * (i + 1))));
  assert.deepEqual(vals(agg.finish().weights), [3, 10, -2]); // unweighted
  const tm = createStrategy({ name: 'trimmed_mean' }).aggregateFit(1, one(0, 0));
  five.forEach((w, i) => tm.add(res(`s${i}`, w, 1)));
  assert.deepEqual(vals(tm.finish().weights), [3, 0]);
});

test('median and trimmed mean agree with a sort-based reference for K = 1..40', () => {
  let seed = 9;
  const rnd = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 10 - 5;
  for (let K = 1; K <= 40; K++) {
    const ups = Array.from({ length: K }, () => one(...Array.from({ length: 50 }, () => Math.round(rnd() * 4) / 4)));
    const med = vals(coordinateMedian(ups));
    const tm = vals(trimmedMean(ups, 0.2));
    const cut = Math.floor(0.2 * K);
    for (let i = 0; i < 50; i++) {
      const col = ups.map((u) => vals(u)[i]!).sort((a, b) => a - b);
      const m = K % 2 ? col[(K - 1) / 2]! : (col[K / 2 - 1]! + col[K / 2]!) / 2;
      assert.ok(med[i] === f32(m), `median K=${K} i=${i}: ${med[i]} vs ${m}`); // (-0 === 0)
      const kept = col.slice(cut, K - cut);
      assert.ok(Math.abs(tm[i]! - f32(kept.reduce((a, b) => a + b, 0) / kept.length)) <= 1e-6, `trimmed K=${K} i=${i}`);
    }
  }
});

test('metrics are averaged weighted by examples', () => {
  const m = weightedMetrics([
    { weight: 1, metrics: { dice: 0.5, iou: 0.2 } },
    { weight: 3, metrics: { dice: 0.9 } },
    { weight: 2, metrics: { dice: NaN } },
  ]);
  assert.ok(Math.abs(m.dice! - (0.5 + 2.7) / 4) < 1e-15);
  assert.equal(m.iou, 0.2);
});

test('strategy config errors are clear', () => {
  assert.throws(() => createStrategy({ name: 'fedavg', eta: 1 } as never), /Unrecognized key/);
  assert.throws(() => createStrategy({ name: 'krum' } as never), /Invalid discriminator/);
  assert.throws(() => createStrategy({ name: 'fedadam', beta_1: 1 }), /beta_1|less than 1/);
});

test('FedAvgM: Flower semantics by hand (server learning rate, momentum from round 2); state survives save/load', () => {
  assert.ok(STRATEGY_NAMES.includes('fedavgm'));
  assert.deepEqual(StrategyConfigSchema.parse({ name: 'fedavgm' }), { name: 'fedavgm', server_learning_rate: 1, server_momentum: 0 });
  const p = { server_learning_rate: 0.5, server_momentum: 0.9 };
  const x = [1, -2];
  // round 1: g = x - agg; m = g; new = x - lr m
  const s1 = fedAvgMStep(one(...x), one(2, -2), undefined, p);
  const g1 = [f32(1 - 2), 0];
  assert.deepEqual(vals(s1.momentum!), g1);
  const w1 = x.map((xi, i) => f32(xi - 0.5 * g1[i]!));
  assert.deepEqual(vals(s1.weights), w1);
  // round 2: m = 0.9 m + g
  const agg2 = [w1[0]! + 1, w1[1]! - 1];
  const s2 = fedAvgMStep(s1.weights, one(...agg2), s1.momentum, p);
  const g2 = agg2.map((a, i) => f32(w1[i]! - f32(a)));
  const m2 = g1.map((m, i) => f32(0.9 * m + g2[i]!));
  assert.deepEqual(vals(s2.momentum!), m2);
  assert.deepEqual(vals(s2.weights), w1.map((wi, i) => f32(wi - 0.5 * m2[i]!)));
  // without momentum: plain server SGD, no state
  const plain = fedAvgMStep(one(...x), one(2, -2), undefined, { server_learning_rate: 2, server_momentum: 0 });
  assert.equal(plain.momentum, undefined);
  assert.deepEqual(vals(plain.weights), [3, -2]);

  // the strategy: FedAvg, then the step; a restored strategy reaches the same round-2 global
  const cfg = { name: 'fedavgm', server_learning_rate: 0.7, server_momentum: 0.5 } as const;
  const global = tinyDecoder(5);
  const rounds = [1, 2].map((r) => [1, 2].map((k) => res(`s${k}`, tinyDecoder(10 * r + k), k)));
  const run = (s: ReturnType<typeof createStrategy>, round: number, g: NamedTensors) => {
    const agg = s.aggregateFit(round, g);
    for (const u of rounds[round - 1]!) agg.add(u);
    return agg.finish().weights;
  };
  const a = createStrategy(cfg);
  const a1 = run(a, 1, global);
  const expected1 = fedAvgMStep(global, fedAvg(rounds[0]!), undefined, cfg).weights;
  for (const [n, e] of expected1) assert.deepEqual(a1.get(n)!.data, e.data, n);
  const saved = a.saveState(); // live until the next round: the server writes it at once
  assert.equal(saved.scalars.has_momentum, 1);
  const b = createStrategy(cfg);
  b.loadState(saved);
  const a2 = run(a, 2, a1);
  const b2 = run(b, 2, a1);
  for (const [n, t] of a2) assert.deepEqual(b2.get(n)!.data, t.data, n);
  // defaults: exactly FedAvg
  const d = createStrategy({ name: 'fedavgm' });
  const d1 = run(d, 1, global);
  for (const [n, e] of fedAvg(rounds[0]!)) assert.deepEqual(d1.get(n)!.data, e.data, n);
});

test('configureFit samples fraction_fit of the sites (at least min_fit_clients), the same for the same round and attempt', () => {
  const options = { fraction_fit: 0.5, min_fit_clients: 2, fraction_evaluate: 0.25, min_evaluate_clients: 3, seed: 7, fit: { epochs: 2, lr: 0.01, batch_size: 3, seed: 5, points_positive: 1, points_negative: 0, optimizer_state: 'fresh' as const, warmup_steps: 7, lr_decay: 0.5, ditto_lambda: null, box_jitter: 'sam' as const } };
  const s = createStrategy({ name: 'fedavg' }, options);
  const available = Array.from({ length: 10 }, (_, i) => `site-${i}`);
  const fit = s.configureFit(3, { available, attempt: 1 });
  assert.equal(fit.length, 5);
  assert.deepEqual(s.configureFit(3, { available, attempt: 1 }), fit);
  assert.notDeepEqual(s.configureFit(3, { available, attempt: 2 }).map((i) => i.site), fit.map((i) => i.site));
  assert.equal(s.configureFit(1, { available: available.slice(0, 3), attempt: 1 }).length, 2); // floor(1.5) < min 2
  const c = fit[0]!.ins.config;
  assert.deepEqual({ ...c, seed: 0 }, { epochs: 2, lr: 0.01 * 0.5 ** 2, batch_size: 3, proximal_mu: 0, seed: 0, params: {}, points_positive: 1, points_negative: 0, optimizer_state: 'fresh', warmup_steps: 7, box_jitter: 'sam' });
  assert.notEqual(fit[0]!.ins.config.seed, fit[1]!.ins.config.seed, 'each site trains with its own seed');
  // Ditto's λ travels in params beside each strategy's own
  const ditto = { ...options, fit: { ...options.fit, ditto_lambda: 0.05 } };
  assert.deepEqual(createStrategy({ name: 'scaffold' }, ditto).configureFit(1, { available, attempt: 1 })[0]!.ins.config.params, { ditto_lambda: 0.05, scaffold: 1 });
  assert.deepEqual(createStrategy({ name: 'fedprox', proximal_mu: 0.1 }, ditto).configureFit(1, { available, attempt: 1 })[0]!.ins.config.params, { ditto_lambda: 0.05, proximal_mu: 0.1 });
  // evaluation: at least max(1, min_evaluate_clients) sites, none when fewer are connected or fraction_evaluate is 0
  assert.equal(s.configureEvaluate(1, { available, attempt: 1 }).length, 3);
  assert.deepEqual(s.configureEvaluate(1, { available: available.slice(0, 2), attempt: 1 }), []);
  assert.deepEqual(createStrategy({ name: 'fedavg' }, { ...options, fraction_evaluate: 0 }).configureEvaluate(1, { available, attempt: 1 }), []);
});

test('every averaging strategy (FedAvgM too) weighs by FitRes.weight, the weighting policy\'s, not by the count a site reports', () => {
  const global = tinyDecoder(5);
  // three sites, one of which claims 1e12 examples; the policy (uniform here) gave every site weight 1
  const claims = [3, 1e12, 7];
  const liars = [1, 2, 3].map((k, i) => ({ ...res(`s${k}`, tinyDecoder(20 + k), claims[i]!, undefined, { loss: k }), weight: 1 }));
  const honest = [1, 2, 3].map((k) => res(`s${k}`, tinyDecoder(20 + k), 1, undefined, { loss: k }));
  const cfgs: StrategyConfigInput[] = [
    { name: 'fedavg' }, { name: 'fedprox', proximal_mu: 0.1 }, { name: 'fedavgm', server_learning_rate: 0.7, server_momentum: 0.5 },
    { name: 'fedadam', eta: 0.05 }, { name: 'fedyogi', eta: 0.05 },
  ];
  for (const cfg of cfgs) {
    const run = (ups: FitRes[]) => {
      const agg = createStrategy(cfg).aggregateFit(1, global);
      for (const u of ups) agg.add(u);
      assert.equal(agg.totalWeight, 3, cfg.name);
      return agg.finish();
    };
    const got = run(liars);
    const want = run(honest);
    for (const [n, tt] of want.weights) assert.deepEqual(got.weights.get(n)!.data, tt.data, `${cfg.name} ${n}`);
    assert.equal(got.metrics.loss, 2, cfg.name);
  }
  // FedAvgM: the server step on the uniform mean
  const m = { server_learning_rate: 0.7, server_momentum: 0.5 };
  const agg = createStrategy({ name: 'fedavgm', ...m }).aggregateFit(1, global);
  for (const u of liars) agg.add(u);
  const next = agg.finish().weights;
  for (const [n, e] of fedAvgMStep(global, fedAvg(honest), undefined, m).weights) assert.deepEqual(next.get(n)!.data, e.data, n);
  // evaluation means
  const ev = createStrategy({ name: 'fedavgm', ...m }).aggregateEvaluate(1, [
    { site: 'a', numExamples: 1e12, weight: 1, metrics: { dice: 0 } }, { site: 'b', numExamples: 4, weight: 1, metrics: { dice: 0.9 } },
  ]);
  assert.equal(ev.metrics.dice, 0.45);
});

test('fit and evaluation metrics are the example-weighted means of what the sites report', () => {
  const s = createStrategy({ name: 'median' });
  const agg = s.aggregateFit(1, one(0));
  agg.add(res('a', one(1), 1, undefined, { loss: 1 }));
  agg.add(res('b', one(2), 3, undefined, { loss: 2, extra: 5 }));
  assert.deepEqual(agg.finish().metrics, { loss: 1.75, extra: 5 });
  const ev = s.aggregateEvaluate(1, [{ site: 'a', numExamples: 1, weight: 1, metrics: { dice: 0.5 } }, { site: 'b', numExamples: 1, weight: 1, metrics: { dice: 0.7 } }]);
  assert.ok(Math.abs(ev.metrics.dice! - 0.6) < 1e-15);
  assert.equal(s.evaluate(1, one(0)), undefined);
  assert.equal(s.initialize(), undefined);
});

test('FedOpt state in the format earlier releases wrote (m.<name>, v.<name>, has_moments) still loads', () => {
  const name = 'mask_decoder.w';
  const state = {
    scalars: { has_moments: 1 },
    tensors: new Map([[`m.${name}`, t(0.1, -0.1)], [`v.${name}`, t(0.01, 0.01)]]),
  };
  const s = createStrategy({ name: 'fedadam', eta: 0.1 });
  s.loadState(state);
  const agg = s.aggregateFit(3, one(1, 1));
  agg.add(res('a', one(1.5, 0.5), 1));
  const got = vals(agg.finish().weights);
  const expected = fedOptStep('adam', one(1, 1), one(1.5, 0.5), { m: new Map([[name, t(0.1, -0.1)]]), v: new Map([[name, t(0.01, 0.01)]]) },
    { eta: 0.1, beta_1: 0.9, beta_2: 0.99, tau: 1e-9 }, 3);
  assert.deepEqual(got, vals(expected.weights));
  assert.deepEqual([...s.saveState().tensors.keys()].sort(), [`m.${name}`, `v.${name}`]);
});

test('a failed round is retried after 1, 2, 4 ... s, at most a minute apart', () => {
  assert.deepEqual([1, 2, 3, 4, 7, 8].map((a) => roundRetryDelayS(1, a)), [1, 2, 4, 8, 60, 60]);
  assert.equal(roundRetryDelayS(0, 5), 0);
});

test('FedAdam\'s server learning rate defaults to the sites\' learning rate; a configured one wins; neither is an error', () => {
  const fit = { ...ServerConfigSchema.parse({}).fit, lr: 1e-3 };
  const opts = { ...ServerConfigSchema.parse({}), fit };
  assert.equal(fedAdamEta(undefined, 1e-3), 1e-3);
  assert.equal(fedAdamEta(0.05, 1e-3), 0.05);
  assert.throws(() => fedAdamEta(undefined, null), /strategy\.eta.*fit\.lr/);
  assert.throws(() => createStrategy({ name: 'fedadam' }), RangeError);
  // the derived eta is the one the step uses: one round from zero moments moves a weight by about eta (tau ~ 0)
  const strategy = createStrategy({ name: 'fedadam' }, opts);
  const agg = strategy.aggregateFit(1, one(1, -2, 0.5));
  agg.add(res('a', one(1.5, -2.5, 0.5), 1));
  const w = vals(agg.finish().weights);
  const etaNorm = (1e-3 * Math.sqrt(1 - 0.99 ** 2)) / (1 - 0.9 ** 2);
  assert.ok(Math.abs(w[0]! - (1 + etaNorm)) < 1e-6 && Math.abs(w[1]! - (-2 - etaNorm)) < 1e-6 && w[2] === 0.5, `${w}`);
});
