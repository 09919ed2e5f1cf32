/**
 * Issue 12, results and layout: the metrics table against the CLI's own numbers (computed here by
 * running `mnlab run --json`, never written down), the verdict matrix and charts with 8 policies,
 * the layout at 1024x640 and 1100x700 (no sideways page scroll, no overlaps, no clipped matrix
 * cells), resizable panes and a maximised traces pane, a previous result marked after a scenario
 * switch and a Cancel, and Ctrl+S saving what the active tab shows. Screenshots go to
 * test-results/screenshots/.
 */
import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { expect, test, type Page } from '@playwright/test'
import { ROOT } from './host'
import { LabPage } from './labPage'

const UPGRADE = 'upgrade-loop.smmu-no-btm.yaml'
const COW = 'cow-ordering.invalidate-range-needed.yaml'
/** Presets and variants: 8 policies, so labels and rows are tried beyond the three presets. */
const MANY = [
  'start-end',
  'invalidate-range',
  'arch-hook',
  'start-end+upgrade-notify',
  'invalidate-range+upgrade-notify',
  'invalidate-range+access-flags-notify',
  'start-end+pri-flush',
  'invalidate-range+pri-flush',
]

test.describe.configure({ mode: 'serial' })

let lab: LabPage

function scenariosDir(): string {
  const d = process.env.MNLAB_SCENARIOS
  if (!d) throw new Error('MNLAB_SCENARIOS is not set: run through playwright.config.ts')
  return d
}
function notebooksDir(): string {
  const d = process.env.MNLAB_NOTEBOOKS
  if (!d) throw new Error('MNLAB_NOTEBOOKS is not set: run through playwright.config.ts')
  return d
}

interface CliPolicy {
  policy: string
  metrics: Record<string, number>
  invalidations: { page: number; range: number; full: number; atc: number }
  costTable: string
  metricsSchedule: string
}

/** What `mnlab run --json` says for these policies on the same file the host serves. */
function cliRun(file: string, policies: readonly string[]): CliPolicy[] {
  const out = execFileSync(
    process.execPath,
    [
      path.join(ROOT, 'bin/mnlab.cjs'),
      'run',
      path.join(scenariosDir(), file),
      '--policy',
      policies.join(','),
      '--json',
    ],
    { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 },
  )
  return (JSON.parse(out) as { run: { results: CliPolicy[] } }).run.results
}

/** Asserts the page does not scroll sideways and nothing important overlaps or is cut. */
async function checkLayout(page: Page, label: string): Promise<void> {
  const m = await page.evaluate<{
    scrollWidth: number
    innerWidth: number
    scrollHeight: number
    innerHeight: number
  }>(
    `({ scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
        scrollHeight: document.documentElement.scrollHeight, innerHeight: window.innerHeight })`,
  )
  expect(m.scrollWidth, `${label}: page scrolls sideways`).toBeLessThanOrEqual(m.innerWidth)
  expect(m.scrollHeight, `${label}: page scrolls down`).toBeLessThanOrEqual(m.innerHeight)
  // The title bar and the tabs: each on its own line, no overlap.
  const brand = (await page.locator('.brand').boundingBox())!
  const tabs = (await page.locator('nav.tabs').boundingBox())!
  const top = (await page.locator('header.top').boundingBox())!
  expect(brand.y + brand.height, `${label}: the title runs into the tabs`).toBeLessThanOrEqual(tabs.y)
  expect(top.y + top.height, `${label}: the top bar runs into the tabs`).toBeLessThanOrEqual(tabs.y + 0.5)
  // The brand stays on one line (34 px bar).
  expect(brand.height, `${label}: the title wraps`).toBeLessThan(24)
  // Every policy toggle of the sidebar's grid is inside the sidebar (none cut at its right edge).
  const side = (await page.locator('.side').boundingBox())!
  const toggles = page.locator('[data-testid="policy-panel"] input[type="checkbox"][data-testid^="policy-"]')
  expect(await toggles.count()).toBeGreaterThan(10)
  for (const box of await toggles.evaluateAll((els) => els.map((e) => e.getBoundingClientRect().right)))
    expect(box, `${label}: a policy toggle is cut off`).toBeLessThanOrEqual(side.x + side.width)
}

/** Every verdict-matrix cell and head shows all of its text (nothing clipped or ellipsised). */
async function matrixClipped(page: Page): Promise<string[]> {
  return page.evaluate<string[]>(`
    [...document.querySelectorAll('[data-testid="verdict-matrix"] :is(th, td, th *, td *)')]
      .filter((el) => el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).display !== 'inline')
      .map((el) => el.tagName + ' "' + (el.textContent ?? '').trim() + '" ' + el.scrollWidth + '>' + el.clientWidth)
  `)
}

async function runMany(): Promise<void> {
  await lab.openScenario(UPGRADE)
  await lab.selectPolicies(MANY)
  await lab.run()
  await expect(lab.progress).toHaveAttribute('data-status', 'finished')
  await expect(lab.page.locator('[data-testid="metrics-row"]')).toHaveCount(MANY.length)
}

test.beforeEach(async ({ page }) => {
  lab = new LabPage(page)
})

test.afterEach(() => {
  lab.expectNoErrors()
})

test('the metrics table shows the numbers the CLI prints, and differences from a baseline', async ({
  page,
}) => {
  await page.setViewportSize({ width: 1500, height: 920 })
  await lab.open()
  await runMany()
  const cli = cliRun(UPGRADE, MANY)
  expect(cli.map((p) => p.policy)).toEqual(MANY)
  const value = (policy: string, metric: string) =>
    page.locator(`[data-testid="metric-cell"][data-policy="${policy}"][data-metric="${metric}"]`)
  const cliValue = (p: CliPolicy, metric: string): number =>
    metric.startsWith('inv_') ? p.invalidations[metric.slice(4) as 'page'] : p.metrics[metric]!
  const METRICS = [
    'notifier_calls',
    'secondary_invalidations',
    'inv_page',
    'inv_range',
    'inv_full',
    'inv_atc',
    'device_faults',
    'mirror_zaps',
    'cpu_tlb_flushes',
    'sim_ns',
  ]
  for (const p of cli)
    for (const m of METRICS)
      await expect(value(p.policy, m)).toHaveAttribute('data-value', String(cliValue(p, m)))
  // The sim_ns cell reads in ns, as its column says, and the numbers are on the page, not in tooltips.
  const se = cli.find((p) => p.policy === 'start-end')!
  await expect(value('start-end', 'sim_ns').locator('.v')).toHaveText(
    `${se.metrics.sim_ns!.toLocaleString('en-US')} ns`,
  )
  await expect(page.getByTestId('cost-table')).toHaveText(cli[0]!.costTable)
  // What the CLI prints under its table; how each policy's execution ended is in its row's tooltip.
  await expect(page.getByTestId('metrics-measured')).toContainText(
    cli[0]!.metricsSchedule.replace(/ \(ended: [^)]*\)$/, ''),
  )
  await expect(page.locator('[data-testid="metrics-row"][data-policy="start-end"] th')).toHaveAttribute(
    'title',
    new RegExp(se.metricsSchedule.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')),
  )

  // Differences from a chosen baseline: computed from the CLI's numbers.
  await page.getByTestId('metrics-baseline').selectOption('arch-hook')
  const ah = cli.find((p) => p.policy === 'arch-hook')!
  for (const p of cli) {
    if (p.policy === 'arch-hook') continue
    for (const m of ['notifier_calls', 'device_faults', 'sim_ns'])
      await expect(value(p.policy, m)).toHaveAttribute('data-delta', String(cliValue(p, m) - cliValue(ah, m)))
  }
  const d = se.metrics.sim_ns! - ah.metrics.sim_ns!
  await expect(value('start-end', 'sim_ns').locator('.d')).toHaveText(
    `${d > 0 ? '+' : d < 0 ? '-' : '±'}${Math.abs(d).toLocaleString('en-US')}${d === 0 ? '' : ' ns'}`,
  )
  await expect(value('arch-hook', 'sim_ns').locator('.d')).toHaveCount(0)

  // The charts grow with the policies: every policy label has a row of its own.
  const canvases = page.getByTestId('metrics-chart').locator('canvas')
  const nsBox = (await canvases.nth(1).boundingBox())!
  expect(nsBox.height / MANY.length).toBeGreaterThanOrEqual(14)
  await page.getByTestId('metrics-table').scrollIntoViewIfNeeded()
  await lab.screenshot('40-metrics-table-8-policies')
  await page.getByTestId('metrics-chart').scrollIntoViewIfNeeded()
  await lab.screenshot('41-metrics-charts-8-policies')
  // Dark theme: the charts redraw in its colours (axis, labels, values).
  await page.getByTestId('theme-toggle').click()
  await page.getByTestId('theme-toggle').click()
  await expect(page.locator('html')).toHaveAttribute('data-theme', 'dark')
  await page.getByTestId('metrics-table').scrollIntoViewIfNeeded()
  await lab.screenshot('49-metrics-dark')
})

test('with eight policies the compare strip stays short: it scrolls inside, the hint and the traces keep their room', async ({
  page,
}) => {
  test.setTimeout(180_000)
  await page.setViewportSize({ width: 1400, height: 900 })
  await lab.open()
  await runMany()
  await lab.counterexample('start-end').getByTestId('compare-schedule').click()
  await expect(page.getByTestId('compare-outcome')).toHaveCount(MANY.length, { timeout: 60_000 })
  const strip = (await page.getByTestId('compare-panel').boundingBox())!
  const pane = (await page.getByTestId('traces-pane').boundingBox())!
  expect(strip.height, 'the compare strip takes most of the traces pane').toBeLessThanOrEqual(
    pane.height * 0.42,
  )
  // The traces below still show rows.
  const rows = lab.tracePane('left').locator('[data-testid="trace-row"]')
  await expect(rows.first()).toBeVisible()
  const scroller = (await lab.tracePane('left').getByTestId('trace-scroller').boundingBox())!
  expect(scroller.height, 'trace rows squeezed out by the compare strip').toBeGreaterThanOrEqual(5 * 20)
  await lab.screenshot('44-compare-8-policies')
})

for (const [w, h] of [
  [1024, 640],
  [1100, 700],
] as const) {
  test(`the layout at ${w}x${h}: no sideways scroll, no overlaps, nothing clipped in the matrix`, async ({
    page,
  }) => {
    await page.setViewportSize({ width: w, height: h })
    await lab.open()
    await checkLayout(page, `${w}x${h} empty`)
    await runMany()
    await checkLayout(page, `${w}x${h} with results`)
    expect(await matrixClipped(page)).toEqual([])
    // The top bar's per-policy chips: a count that always shows, and chips that scroll sideways
    // (none cut off out of reach) when they do not fit.
    await expect(page.getByTestId('progress-summary')).toHaveText(/^\d+\/\d+ done$/)
    const chips = page.getByTestId('progress-policies')
    const [csw, ccw, over] = await chips.evaluate((el) => [
      el.scrollWidth,
      el.clientWidth,
      (
        el.ownerDocument.defaultView as unknown as { getComputedStyle(e: unknown): { overflowX: string } }
      ).getComputedStyle(el).overflowX,
    ])
    if ((csw as number) > (ccw as number) + 1)
      expect(over, 'progress chips cut off, not scrollable').toBe('auto')
    // At the default pane sizes the whole matrix fits its pane: no column hidden to the right.
    const wrap = page.locator('.matrix-wrap')
    const [sw, cw] = await wrap.evaluate((el) => [el.scrollWidth, el.clientWidth])
    expect(sw, 'the verdict matrix is wider than its pane').toBeLessThanOrEqual(cw! + 1)
    // Verdict words and policy names are whole on screen.
    const cell = lab.cell('start-end', 'progress')
    await expect(cell.locator('.cv')).toHaveText('violated')
    await expect(lab.overall('invalidate-range+access-flags-notify')).toBeVisible()
    await lab.screenshot(`42-layout-${w}x${h}`)
    await page.getByTestId('metrics-table').scrollIntoViewIfNeeded()
    // Ten metric columns do not fit a pane this narrow: the table scrolls inside itself, and says so.
    await expect(page.getByTestId('metrics-scroll-hint')).toBeVisible()
    // sim_ns, the one cost figure, sits right after the policy column and sticks with it: in
    // view before and after the table is scrolled to its last column.
    const mwrap = page.getByTestId('metrics-table').locator('.wrap')
    const sim = page.locator('[data-testid="metric-cell"][data-metric="sim_ns"]').first()
    for (const scrollTo of [0, 10_000]) {
      await mwrap.evaluate((el, x) => ((el as unknown as { scrollLeft: number }).scrollLeft = x), scrollTo)
      const wb = (await mwrap.boundingBox())!
      const sb = (await sim.boundingBox())!
      expect(sb.x, `sim_ns scrolled out of view (scrollLeft ${scrollTo})`).toBeGreaterThanOrEqual(wb.x)
      expect(sb.x + sb.width, `sim_ns cut off (scrollLeft ${scrollTo})`).toBeLessThanOrEqual(
        wb.x + wb.width + 1,
      )
    }
    await mwrap.evaluate((el) => ((el as unknown as { scrollLeft: number }).scrollLeft = 0))
    await lab.screenshot(`42-layout-${w}x${h}-metrics`)

    // A trace open under the results: still no sideways page scroll.
    await page
      .locator('[data-testid="counterexample"][data-policy="start-end"]')
      .first()
      .getByTestId('open-trace')
      .click()
    await expect(lab.tracePane('left').locator('[data-testid="trace-row"]').first()).toBeVisible()
    await checkLayout(page, `${w}x${h} with a trace`)
    await lab.screenshot(`43-layout-${w}x${h}-trace`)

    // Maximise the traces pane: it takes the window below the top bar; restore gives it back.
    const pane = page.getByTestId('traces-pane')
    const before = (await pane.boundingBox())!
    await page.getByTestId('traces-maximise').click()
    await expect(page.getByTestId('traces-maximise')).toHaveAttribute('aria-pressed', 'true')
    await expect.poll(async () => (await pane.boundingBox())!.height).toBeGreaterThan(h - 34 - 20 - 10)
    await expect.poll(async () => (await pane.boundingBox())!.width).toBeGreaterThan(w - 10)
    await checkLayoutNoTabs(page, `${w}x${h} traces maximised`)
    await lab.screenshot(`44-layout-${w}x${h}-traces-maximised`)
    await page.getByTestId('traces-maximise').click()
    await expect
      .poll(async () => Math.round((await pane.boundingBox())!.height))
      .toBe(Math.round(before.height))
  })
}

/** As checkLayout, for a state where the tabs are folded away (traces maximised). */
async function checkLayoutNoTabs(page: Page, label: string): Promise<void> {
  const m = await page.evaluate<{ scrollWidth: number; innerWidth: number }>(
    '({ scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth })',
  )
  expect(m.scrollWidth, `${label}: page scrolls sideways`).toBeLessThanOrEqual(m.innerWidth)
}

test('the splitters resize the panes, and the sizes survive a reload', async ({ page }) => {
  await page.setViewportSize({ width: 1100, height: 700 })
  await lab.open()
  await page.getByTestId('layout-reset').click()
  const results = page.locator('.right')
  const w0 = (await results.boundingBox())!.width
  // The splitter left of the results pane: drag it 120 px to the left.
  const splitter = page.locator('.splitpanes--vertical .splitpanes--vertical > .splitpanes__splitter').first()
  const s = (await splitter.boundingBox())!
  await page.mouse.move(s.x + s.width / 2, s.y + s.height / 2)
  await page.mouse.down()
  await page.mouse.move(s.x - 120, s.y + s.height / 2, { steps: 8 })
  await page.mouse.up()
  await expect.poll(async () => (await results.boundingBox())!.width).toBeGreaterThan(w0 + 80)
  const w1 = (await results.boundingBox())!.width
  await page.reload()
  await expect(page.getByTestId('scenario-item').first()).toBeVisible()
  await expect.poll(async () => Math.abs((await results.boundingBox())!.width - w1)).toBeLessThan(3)
  await checkLayout(page, '1100x700 resized')
  await page.getByTestId('layout-reset').click()
  await expect.poll(async () => Math.abs((await results.boundingBox())!.width - w0)).toBeLessThan(3)
})

test('a previous result is marked after a scenario switch and after Cancel, and can be cleared', async ({
  page,
}) => {
  test.setTimeout(120_000)
  await lab.open()
  await lab.openScenario(UPGRADE)
  await lab.selectPolicies(['start-end', 'arch-hook'])
  await lab.run()
  await expect(page.getByTestId('stale-result')).toHaveCount(0)
  await page
    .locator('[data-testid="counterexample"][data-policy="start-end"]')
    .first()
    .getByTestId('open-trace')
    .click()
  await expect(page.getByTestId('stale-traces')).toHaveCount(0)

  // Another scenario in the editor: the results (and the open trace) say whose they are.
  await lab.openScenario(COW)
  await expect(page.getByTestId('stale-result')).toContainText(`Previous result (of ${UPGRADE})`)
  await expect(page.getByTestId('stale-result')).toContainText(`the editor shows ${COW}`)
  await expect(page.getByTestId('stale-traces')).toContainText(UPGRADE)
  await lab.screenshot('45-previous-result')

  // A run of the COW scenario, cancelled: the upgrade result is still marked as previous.
  await lab.selectPolicies(['start-end', 'invalidate-range', 'arch-hook'])
  await lab.runButton.click()
  await expect(lab.progress).toHaveAttribute('data-status', 'running')
  await expect(page.getByTestId('stale-result')).toContainText(`(of ${UPGRADE})`)
  await lab.cancelButton.click()
  await expect(lab.progress).toHaveAttribute('data-status', 'cancelled', { timeout: 10_000 })
  await expect(page.getByTestId('stale-result')).toContainText(`(of ${UPGRADE})`)

  // Clear drops the result and its traces.
  await page.getByTestId('clear-result').click()
  await expect(lab.matrix).toHaveCount(0)
  await expect(page.getByTestId('stale-result')).toHaveCount(0)
  await expect(page.getByTestId('stale-traces')).toHaveCount(0)
  await expect(page.getByTestId('pick-left')).toHaveValue('')

  // Back on the upgrade scenario, a fresh result is not marked.
  await lab.openScenario(UPGRADE)
  await lab.run()
  await expect(page.getByTestId('stale-result')).toHaveCount(0)
})

test('Ctrl+S saves what the active tab shows: the scenario on its tab, the notebook on its tab', async ({
  page,
}) => {
  await lab.open()
  // A scenario with an unsaved edit.
  await lab.openScenario(UPGRADE)
  const file = path.join(scenariosDir(), UPGRADE)
  const original = readFileSync(file, 'utf8')
  await expect.poll(() => lab.editorText()).toContain('title:')
  const titleLine = original.split('\n').findIndex((l) => l.startsWith('title:')) + 1
  await lab.replaceLine(titleLine, 'title: saved by Ctrl+S on the Scenario tab')
  await expect(page.getByTestId('tab-scenario')).toContainText('●')

  // The Notebook tab: open a notebook, change it, Ctrl+S.
  await page.getByTestId('tab-notebook').click()
  await page.getByTestId('nb-open').click()
  await page.getByTestId('nb-open-path').fill('cow-ordering-2017.mnlab.yaml')
  await page.getByTestId('nb-open-submit').click()
  await expect(page.getByTestId('nb-title')).toHaveValue(/.+/)
  // A copy of its own, so the example notebook other specs open stays as it is.
  await page.getByTestId('nb-save-as').click()
  await page.getByTestId('nb-save-as-path').fill('e2e-ctrl-s')
  await page.getByTestId('nb-save-as-submit').click()
  await expect(page.getByTestId('nb-file')).toHaveText('e2e-ctrl-s.mnlab.yaml')
  await page.getByTestId('nb-add-note').click()
  await page.getByTestId('nb-note-editor').fill('Saved by Ctrl+S on the Notebook tab.')
  await page.getByTestId('nb-note-done').click()
  await expect(page.getByTestId('nb-dirty')).toBeVisible()
  await page.keyboard.press('ControlOrMeta+s')
  await expect(page.getByTestId('nb-dirty')).toHaveCount(0)
  const nbFile = path.join(notebooksDir(), 'e2e-ctrl-s.mnlab.yaml')
  await expect.poll(() => readFileSync(nbFile, 'utf8')).toContain('Saved by Ctrl+S on the Notebook tab.')
  // ... and not the scenario: still unsaved, the file as it was.
  await expect(page.getByTestId('tab-scenario')).toContainText('●')
  expect(readFileSync(file, 'utf8')).toBe(original)
  await lab.screenshot('46-ctrl-s-notebook')

  // The Scenario tab: Ctrl+S saves the scenario (the notebook is already saved; make it dirty again).
  await page.getByTestId('nb-add-note').click()
  await page.getByTestId('nb-note-editor').fill('Not saved by the Scenario tab.')
  await page.getByTestId('nb-note-done').click()
  await expect(page.getByTestId('nb-dirty')).toBeVisible()
  await page.getByTestId('tab-scenario').click()
  await page.keyboard.press('ControlOrMeta+s')
  await expect(page.getByTestId('tab-scenario')).not.toContainText('●')
  await expect.poll(() => readFileSync(file, 'utf8')).toContain('title: saved by Ctrl+S on the Scenario tab')
  expect(readFileSync(nbFile, 'utf8')).not.toContain('Not saved by the Scenario tab.')
  await expect(page.getByTestId('tab-notebook')).toContainText('●')
  await lab.screenshot('47-ctrl-s-scenario')

  // Leave nothing unsaved for the next specs (no recovery offer), and the scenario as it was.
  await page.getByTestId('tab-notebook').click()
  await page.keyboard.press('ControlOrMeta+s')
  await expect(page.getByTestId('nb-dirty')).toHaveCount(0)
  writeFileSync(file, original)
})
