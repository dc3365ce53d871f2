import react from '@vitejs/plugin-react';
import { defineConfig, type Plugin } from 'vite';
// @ts-expect-error - plain ESM helper without types
import { devTokenMiddleware } from './dev-token.mjs';

/** /dev-token on the dev server (signed with JWT_SECRET, like the local switchyard). */
function devToken(): Plugin {
  return {
    name: 'switchyard-dev-token',
    configureServer(server) {
      server.middlewares.use(devTokenMiddleware(process.env.JWT_SECRET));
    },
    configurePreviewServer(server) {
      server.middlewares.use(devTokenMiddleware(process.env.JWT_SECRET));
    },
  };
}

export default defineConfig({
  plugins: [react(), devToken()],
  build: { target: 'es2020', sourcemap: false },
});
