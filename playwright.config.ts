import { defineConfig } from '@playwright/test'

// Drives Debian's /usr/bin/chromium (never `npx playwright install`; the bundled browser cannot be
// downloaded here) against the browser host. e2e/globalSetup.ts starts `node bin/web.cjs --port 0`
// (the host prints its URL with a per-launch token, which a `webServer` entry could not pass on)
// on a copy of scenarios/, and needs the built renderer (`npx electron-vite build`).
// Electron itself cannot be launched on these machines, so `_electron` specs (tagged @electron)
// skip with a reason. Keep video off: it needs Playwright's ffmpeg download.
export default defineConfig({
  testDir: './e2e',
  testMatch: /.*\.spec\.ts/,
  // Only Playwright's own artifacts; screenshots and the scenarios copy live beside it.
  outputDir: 'test-results/playwright',
  globalSetup: './e2e/globalSetup.ts',
  forbidOnly: !!process.env.CI,
  workers: 1,
  retries: process.env.CI ? 1 : 0,
  timeout: 60_000,
  reporter: [['list']],
  use: {
    headless: true,
    viewport: { width: 1500, height: 920 },
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
})
