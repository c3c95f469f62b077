// Compile server/src/strategy/fold.wat into fold.wasm (committed, so nothing is compiled at run time):
//   npm run build:wasm            write fold.wasm
//   npm run build:wasm -- --check exit 1 if fold.wasm is not what fold.wat compiles to
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import wabtInit from 'wabt';

const wat = fileURLToPath(new URL('../src/strategy/fold.wat', import.meta.url));
const out = wat.replace(/\.wat$/, '.wasm');

export async function compileFold() {
  const wabt = await wabtInit();
  const mod = wabt.parseWat('fold.wat', readFileSync(wat, 'utf8'), { simd: true, threads: true });
  try {
    return Buffer.from(mod.toBinary({}).buffer); // V8 validates it when the server compiles it
  } finally {
    mod.destroy();
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const bytes = await compileFold();
  if (process.argv.includes('--check')) {
    const same = Buffer.compare(bytes, readFileSync(out)) === 0;
    console.log(same ? 'fold.wasm is up to date' : 'fold.wasm differs from fold.wat: run npm run build:wasm');
    process.exit(same ? 0 : 1);
  }
  writeFileSync(out, bytes);
  console.log(`wrote ${out} (${bytes.length} bytes)`);
}
