import { resolve } from 'node:path'
import { defineConfig } from 'electron-vite'
import vue from '@vitejs/plugin-vue'

// Vite 8 / electron-vite 6 read `rolldownOptions` (`rollupOptions` is a deprecated alias).
// Do not enable build.bytecode: it spawns the Electron binary, which these machines do not have.
export default defineConfig({
  main: {
    build: {
      rolldownOptions: {
        input: {
          main: resolve(__dirname, 'src-main/electron/main.ts'),
          // The worker pool's entry in the bundle: main.ts starts out/main/exploreWorker.js.
          exploreWorker: resolve(__dirname, 'src-main/node/exploreWorker.ts'),
        },
      },
    },
  },
  preload: {
    build: {
      rolldownOptions: {
        input: { index: resolve(__dirname, 'src-main/preload/index.ts') },
      },
    },
  },
  renderer: {
    root: resolve(__dirname, 'src-renderer'),
    plugins: [vue()],
    build: {
      minify: true,
      // Monaco alone is ~4 MB minified; the workbench is a local app, not a web page on a slow link.
      chunkSizeWarningLimit: 6000,
      rolldownOptions: {
        input: { index: resolve(__dirname, 'src-renderer/index.html') },
      },
    },
    resolve: {
      // monaco-editor >=0.56 has an `exports` map ("./*" -> "./esm/vs/*.js") that turns
      // 'monaco-editor/esm/vs/editor/editor.worker.js' (imported by monaco-worker-manager, a
      // monaco-yaml dependency) into esm/vs/esm/vs/...: map such deep imports to the real files.
      alias: [
        {
          find: /^monaco-editor\/esm\/vs\/(.*)$/,
          replacement: resolve(__dirname, 'node_modules/monaco-editor/esm/vs/$1'),
        },
      ],
    },
    worker: { format: 'es' },
    optimizeDeps: { include: ['monaco-yaml/yaml.worker.js'] },
  },
})
