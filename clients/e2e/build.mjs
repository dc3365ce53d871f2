// Builds what the browser tests serve: the hooks fixture page (React's
// development build, so StrictMode double-invokes effects) into .build/.
import { build } from 'esbuild';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.join(here, '.build');
fs.mkdirSync(out, { recursive: true });
await build({
  entryPoints: [path.join(here, 'fixtures', 'hooks.tsx')],
  bundle: true,
  format: 'iife',
  target: 'es2020',
  jsx: 'automatic',
  define: { 'process.env.NODE_ENV': '"development"' },
  outfile: path.join(out, 'hooks.js'),
  logLevel: 'warning',
});
fs.copyFileSync(path.join(here, 'fixtures', 'hooks.html'), path.join(out, 'hooks.html'));
console.log('e2e: built .build/hooks.js');
