// The console's build: a static bundle under dist/, served by `warden serve`
// at /console/ (crates/server/src/console.rs). The output is committed and
// must be reproducible: content-hashed names, no timestamps, no source maps
// that embed absolute paths.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

export default defineConfig({
  base: '/console/',
  plugins: [react()],
  resolve: {
    // See src/form/no-ajv.ts.
    alias: { '@rjsf/validator-ajv8': fileURLToPath(new URL('./src/form/no-ajv.ts', import.meta.url)) },
  },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: false,
    target: 'es2022',
    // No inline <script> or data: URLs: the server's CSP allows neither.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    chunkSizeWarningLimit: 600,
  },
  server: {
    // `npm run dev` against a local `warden serve`.
    proxy: {
      '/v1': 'http://127.0.0.1:8080',
      '/metrics': 'http://127.0.0.1:8080',
      '/readyz': 'http://127.0.0.1:8080',
      '/healthz': 'http://127.0.0.1:8080',
    },
  },
});
