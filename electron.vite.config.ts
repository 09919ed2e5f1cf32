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
          // exploreWorker: resolve(__dirname, 'src-main/node/exploreWorker.ts'), once it exists
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
      rolldownOptions: {
        input: { index: resolve(__dirname, 'src-renderer/index.html') },
      },
    },
  },
})
