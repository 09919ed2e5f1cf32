/**
 * The GUI half of `npm run bench` (issue 3), reported and never asserted: the browser host runs
 * in-process over the built renderer, and Debian's Chromium (never `npx playwright install`)
 * measures
 *   - cold start: from page.goto(url) to the Monaco editor taking typed input (its input element
 *     has the focus and the typed marker is on screen), in fresh browser contexts;
 *   - run-to-result: from the Run click to the verdict matrix showing all three presets, with
 *     the scenario selected in the browser list, each in a fresh context (so no earlier matrix
 *     is on screen; the first run also pays the worker pool's start-up).
 * Skips with a printed reason when the renderer is not built or Chromium is missing.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { Browser, Page } from 'playwright-core'
import { PRESETS } from '../engine'
import { table } from './format'
import type { ProgressBoard } from './progress'
import { startHost, type Host } from './host'

export const CHROMIUM = '/usr/bin/chromium'
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]
/** Monaco's input: a textarea, or (Monaco >= 0.5x in Chromium) an EditContext div. */
const EDITOR_INPUT =
  '[data-testid="editor"] .monaco-editor textarea:focus, [data-testid="editor"] .monaco-editor .native-edit-context:focus'
const VIEWPORT = { width: 1500, height: 920 }
const COLD_STARTS = 5
/** Scenario file (relative to the scenarios folder) and how many runs to take the median of. */
const GUI_RUNS: readonly (readonly [string, number])[] = [
  ['upgrade-loop.smmu-no-btm.yaml', 3],
  ['cow-ordering.invalidate-range-needed.yaml', 1],
]
const RUN_TIMEOUT_MS = 300_000

export interface GuiBenchOptions {
  readonly rendererDir?: string
  readonly scenariosDir?: string
  readonly chromium?: string
  readonly out?: (s: string) => void
  /** One cold start and one run of the small scenario (see BenchOptions.quick). */
  readonly quick?: boolean
  /** Live progress (the bench's board); none by default. */
  readonly progress?: ProgressBoard
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

const ms = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6
const fmt = (xs: readonly number[]): string => xs.map((x) => x.toFixed(0)).join(', ')

async function freshPage(browser: Browser): Promise<Page> {
  const context = await browser.newContext({ viewport: VIEWPORT })
  return context.newPage()
}

/** goto -> the editor shows a character typed into it. */
async function coldStart(browser: Browser, url: string): Promise<number> {
  const page = await freshPage(browser)
  try {
    const marker = 'zqbench'
    const t0 = process.hrtime.bigint()
    await page.goto(url)
    const lines = page.locator('[data-testid="editor"] .view-lines')
    const deadline = Date.now() + 60_000
    // The first clicks can land before Monaco has mounted; retry until the text shows up.
    for (;;) {
      await lines.click({ timeout: Math.max(1, deadline - Date.now()) })
      const focused = (await page.locator(EDITOR_INPUT).count()) > 0
      if (focused) {
        await page.keyboard.type(marker)
        try {
          await lines.filter({ hasText: marker }).waitFor({ timeout: 2_000 })
          return ms(t0)
        } catch {
          // typed before the editor took it; try again
        }
      }
      if (Date.now() > deadline) throw new Error('the editor did not take typed input within 60 s')
    }
  } finally {
    await page.context().close()
  }
}

/** Selects the scenario in the browser list, then times Run -> all three presets in the matrix. */
async function runToResult(browser: Browser, url: string, file: string): Promise<number> {
  const page = await freshPage(browser)
  try {
    await page.goto(url)
    await page.locator(`[data-testid="scenario-item"][data-path="${file}"]`).click()
    await page.getByTestId('current-file').filter({ hasText: file }).waitFor()
    const field = page.getByTestId('policy-list')
    await field.fill(PRESETS.join(', '))
    await field.press('Enter')
    await page.locator('[data-testid="run-button"]:enabled').waitFor()
    const matrix = PRESETS.reduce(
      (l, p) => l.filter({ has: page.locator(`[data-testid="verdict-overall"][data-policy="${p}"]`) }),
      page.getByTestId('verdict-matrix'),
    )
    const ended = page.locator(
      '[data-testid="progress"][data-status="failed"], [data-testid="progress"][data-status="cancelled"]',
    )
    const t0 = process.hrtime.bigint()
    await page.getByTestId('run-button').click()
    await matrix.or(ended).first().waitFor({ timeout: RUN_TIMEOUT_MS })
    const t = ms(t0)
    if ((await ended.count()) > 0)
      throw new Error(`the run of ${file} ended '${await ended.first().getAttribute('data-status')}'`)
    return t
  } finally {
    await page.context().close()
  }
}

/** Prints the GUI figures (or why they were skipped); returns an exit code (1 only on a failure). */
export async function runGuiBench(options: GuiBenchOptions = {}): Promise<number> {
  const out = options.out ?? ((s: string) => process.stdout.write(s))
  const rendererDir = options.rendererDir ?? path.resolve(__dirname, '../../out/renderer')
  const scenariosDir = options.scenariosDir ?? path.resolve('scenarios')
  const chromiumPath = options.chromium ?? CHROMIUM
  out('\nGUI (browser host + Debian Chromium, headless):\n')
  if (!existsSync(path.join(rendererDir, 'index.html'))) {
    out(`  skipped: no built renderer in ${rendererDir}; run \`npm run build\` first.\n`)
    return 0
  }
  if (!existsSync(chromiumPath)) {
    out(`  skipped: no Chromium at ${chromiumPath} (install Debian's chromium package).\n`)
    return 0
  }
  let host: Host | null = null
  let browser: Browser | null = null
  // A data folder of its own: the user's may hold a pending recovery entry, whose prompt would
  // cover the editor (the bench then failed with "locator.click: Timeout").
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'mnlab-bench-data-'))
  try {
    const { chromium } = await import('playwright-core')
    host = await startHost({ port: 0, scenariosDir, rendererDir, dataDir })
    browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: CHROMIUM_ARGS })
    const rows: string[][] = [['measure', 'n', 'median ms', 'samples ms']]
    const cold: number[] = []
    const coldStarts = options.quick ? 1 : COLD_STARTS
    const coldTask = options.progress?.task('GUI cold start', 'starts', coldStarts)
    for (let i = 0; i < coldStarts; i++) {
      cold.push(await coldStart(browser, host.url))
      coldTask?.update(cold.length)
    }
    coldTask?.done(`median ${median(cold).toFixed(0)} ms`)
    rows.push(['cold start -> editor takes input', String(cold.length), median(cold).toFixed(0), fmt(cold)])
    for (const [file, n] of options.quick ? [[GUI_RUNS[0]![0], 1] as const] : GUI_RUNS) {
      const ts: number[] = []
      const task = options.progress?.task(`GUI run ${file}`, 'runs', n)
      for (let i = 0; i < n; i++) {
        ts.push(await runToResult(browser, host.url, file))
        task?.update(ts.length)
      }
      task?.done(`median ${median(ts).toFixed(0)} ms`)
      rows.push([`run -> matrix: ${file}`, String(n), median(ts).toFixed(0), fmt(ts)])
    }
    options.progress?.stop()
    out(`${table(rows)}\n`)
    return 0
  } catch (e) {
    out(`  failed: ${(e as Error).message.split('\n')[0]}\n`)
    return 1
  } finally {
    options.progress?.stop()
    await browser?.close().catch(() => undefined)
    await host?.close().catch(() => undefined)
    rmSync(dataDir, { recursive: true, force: true })
  }
}
