import { defineConfig } from '@playwright/test'

// Drives Debian's /usr/bin/chromium (never `npx playwright install`; the bundled browser cannot be
// downloaded here). Electron itself cannot be launched on these machines, so `_electron` specs
// (tagged @electron) are unverified. Keep video off: it needs Playwright's ffmpeg download.
export default defineConfig({
  testDir: './e2e',
  testMatch: /.*\.spec\.ts/,
  forbidOnly: !!process.env.CI,
  workers: 1,
  retries: process.env.CI ? 1 : 0,
  reporter: [['list']],
  use: {
    baseURL: 'http://127.0.0.1:5199',
    headless: true,
    screenshot: 'only-on-failure',
    trace: 'retain-on-failure',
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    },
  },
  projects: [{ name: 'debian-chromium', use: { browserName: 'chromium' } }],
  // Serves the built renderer (`npm run build` first); in the browser it talks to fakeLab.
  webServer: {
    command: 'npx vite preview --outDir out/renderer --host 127.0.0.1 --port 5199 --strictPort',
    url: 'http://127.0.0.1:5199/',
    reuseExistingServer: !process.env.CI,
    timeout: 30_000,
  },
})
