/**
 * Starts the browser host (`node bin/web.cjs`) for the browser specs. Not a `webServer` entry:
 * the host makes a fresh token per launch and prints it only in its URL line, which the specs
 * need. Scenarios are served from a copy under test-results/, so saving files in a spec never
 * touches the catalogue. Needs the built renderer (`npx electron-vite build`).
 */
import { cpSync, existsSync, mkdirSync, rmSync } from 'node:fs'
import path from 'node:path'
import { ROOT, startHost } from './host'

export const E2E_SCENARIOS = path.join(ROOT, 'test-results', 'e2e', 'scenarios')
/** The host's notebooks folder is `notebooks` beside its scenarios folder (the example notebooks'
 * `../scenarios/` paths resolve there): a fresh copy too. */
export const E2E_NOTEBOOKS = path.join(ROOT, 'test-results', 'e2e', 'notebooks')
/** Recent list and recovery area, fresh per test run (never the user's ~/.local/state/mnlab). */
export const E2E_DATA = path.join(ROOT, 'test-results', 'e2e', 'data')

export default async function globalSetup(): Promise<() => Promise<void>> {
  if (!existsSync(path.join(ROOT, 'out/renderer/index.html'))) {
    throw new Error(
      'No built renderer in out/renderer: run `npx electron-vite build` (or `npm run build`) first.',
    )
  }
  rmSync(E2E_SCENARIOS, { recursive: true, force: true })
  mkdirSync(path.dirname(E2E_SCENARIOS), { recursive: true })
  cpSync(path.join(ROOT, 'scenarios'), E2E_SCENARIOS, { recursive: true })
  rmSync(E2E_NOTEBOOKS, { recursive: true, force: true })
  cpSync(path.join(ROOT, 'notebooks'), E2E_NOTEBOOKS, { recursive: true })
  rmSync(E2E_DATA, { recursive: true, force: true })

  const { url, child } = await startHost(E2E_SCENARIOS, E2E_DATA)
  process.env.MNLAB_URL = url
  process.env.MNLAB_SCENARIOS = E2E_SCENARIOS
  process.env.MNLAB_NOTEBOOKS = E2E_NOTEBOOKS
  return async () => {
    child.kill('SIGTERM')
  }
}
