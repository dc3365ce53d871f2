#!/usr/bin/env node
// Bundle-size budgets (issue 12): each package's published ESM entry bundled
// with esbuild (minified, its dependencies inlined except the named
// externals) and gzipped at level 9. Exits 1 when a budget is exceeded.
//   @switchyard/client ≤ 10 KB without socket.io-client (idb is included)
//   @switchyard/react  ≤  4 KB without react and @switchyard/client

import { build } from 'esbuild';
import { gzipSync } from 'node:zlib';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const budgets = [
  { name: '@switchyard/client', entry: 'js/dist/index.js', external: ['socket.io-client'], limit: 10 * 1024 },
  { name: '@switchyard/react', entry: 'react/dist/index.js', external: ['react', '@switchyard/client'], limit: 4 * 1024 },
];

let failed = 0;
for (const b of budgets) {
  const out = await build({
    entryPoints: [path.join(root, b.entry)],
    bundle: true,
    minify: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2020',
    external: b.external,
    write: false,
    logLevel: 'error',
  });
  const code = out.outputFiles[0].contents;
  const gz = gzipSync(code, { level: 9 }).length;
  const ok = gz <= b.limit;
  if (!ok) failed++;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${b.name}: ${(code.length / 1024).toFixed(1)} KB min, ${(gz / 1024).toFixed(2)} KB min+gzip (budget ${b.limit / 1024} KB; external: ${b.external.join(', ')})`);
}
if (failed) {
  console.error(`size: ${failed} budget(s) exceeded`);
  process.exit(1);
}
