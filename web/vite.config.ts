import { defineConfig } from 'vite';

// The console is served by the agent at /ui/; `npm run dev` proxies the API to an agent's
// --insecure-listen (PORIN_DEV_API, e.g. http://127.0.0.1:7480).
export default defineConfig({
  base: '/ui/',
  build: { outDir: 'dist', emptyOutDir: true, sourcemap: false, chunkSizeWarningLimit: 1500 },
  server: {
    proxy: process.env.PORIN_DEV_API ? { '/porin': process.env.PORIN_DEV_API } : undefined,
  },
  test: { environment: 'jsdom', include: ['src/**/*.test.ts'] },
} as any);
