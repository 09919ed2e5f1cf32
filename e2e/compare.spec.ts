/**
 * Compare and explain (issue 12) against the browser host: a COW-ordering counterexample
 * replayed on its schedule under the three presets and its differences stepped through; the
 * distinguishing schedule of start-end and arch-hook; the causal marks, stale flag, kernel
 * source links and find on the violating trace. Screenshots go to test-results/screenshots/.
 */
import { expect, test, type Locator } from '@playwright/test'
import { LabPage } from './labPage'

const PRESETS = ['start-end', 'invalidate-range', 'arch-hook']
const COW = 'cow-ordering.invalidate-range-needed.yaml'

test.describe.configure({ mode: 'serial' })

/**
 * The characters of a cell actually on screen: those whose glyph ends inside the cell's box,
 * before an ellipsis the cell draws over its tail.
 */
async function visibleText(cell: Locator): Promise<string> {
  return cell.evaluate((el) => {
    type R = { left: number; right: number }
    type N = { nodeType: number; textContent: string | null; childNodes: ArrayLike<N> }
    const doc = (
      el as unknown as {
        ownerDocument: {
          createRange(): {
            setStart(n: N, o: number): void
            setEnd(n: N, o: number): void
            getBoundingClientRect(): R
          }
        }
      }
    ).ownerDocument
    const box = (el as unknown as { getBoundingClientRect(): R }).getBoundingClientRect()
    // Leave room for the ellipsis a cut cell draws.
    const right = box.right - 8
    let out = ''
    const walk = (n: N): void => {
      if (n.nodeType === 3) {
        const t = n.textContent ?? ''
        for (let i = 0; i < t.length; i++) {
          const r = doc.createRange()
          r.setStart(n, i)
          r.setEnd(n, i + 1)
          const b = r.getBoundingClientRect()
          if (b.right <= right && b.left >= box.left) out += t[i]
        }
      } else for (const c of Array.from(n.childNodes)) walk(c)
    }
    walk(el as unknown as N)
    return out
  })
}

/**
 * Runs the three presets on COW for start-end's counterexample: a compare replays the others on
 * its schedule, so their exhaustive verdicts need not finish (a loaded machine can time them out).
 */
async function runForCompare(): Promise<void> {
  await lab.openScenario(COW)
  await lab.selectPolicies(PRESETS)
  await lab.run(150_000)
  await expect(lab.overall('start-end')).toHaveAttribute('data-match', 'true')
}

/** The acting cell of the row whose step calls `fn` (its tooltip lists `fn: text`). */
function cellCalling(pane: Locator, fn: string): Locator {
  return pane.locator(`[data-testid="trace-row"] .cell.act[title*="${fn}:"]`).first()
}

/**
 * At this window size, range_start and range_end (start-end, left) and the arch hook
 * (arch-hook, right) are told apart by what their cells show; every culprit row keeps its
 * function text beside its mark.
 */
async function checkCells(page: import('@playwright/test').Page, name: string): Promise<void> {
  const left = lab.tracePane('left')
  const right = lab.tracePane('right')
  const start = await visibleText(cellCalling(left, 'mmu_notifier_invalidate_range_start'))
  const end = await visibleText(cellCalling(left, 'mmu_notifier_invalidate_range_end'))
  const arch = await visibleText(cellCalling(right, 'mmu_notifier_arch_invalidate_secondary_tlbs'))
  expect(start, `${name}: range_start cell shows "${start}"`).toMatch(/start/)
  expect(end, `${name}: range_end cell shows "${end}"`).toMatch(/end/)
  expect(arch, `${name}: arch hook cell shows "${arch}"`).toMatch(/tlbs|secondary|arch/)
  expect(new Set([start, end, arch]).size).toBe(3)
  const culprits = left.locator('[data-testid="trace-row"][data-culprit]')
  const n = await culprits.count()
  expect(n).toBeGreaterThan(0)
  for (let i = 0; i < n; i++) {
    const act = culprits.nth(i).locator('.cell.act')
    await expect(act.getByTestId('culprit-mark').first()).toBeVisible()
    const ev = act.getByTestId('trace-ev').first()
    await expect(ev).toBeVisible()
    await expect(ev).not.toBeEmpty()
    // The function text is on screen beside the mark, not hidden behind it.
    expect(
      (await visibleText(act)).replace(/^[FPMUC]+/, '').length,
      `${name}: culprit row ${i}`,
    ).toBeGreaterThan(2)
  }
  void page
}

let lab: LabPage

test.beforeEach(async ({ page }) => {
  lab = new LabPage(page)
  await lab.open()
})

test.afterEach(() => {
  lab.expectNoErrors()
})

test('compare a counterexample on its schedule under all three presets and step through the differences', async ({
  page,
}) => {
  test.setTimeout(180_000)
  await lab.runMatching(COW, PRESETS)
  await lab.counterexample('start-end').getByTestId('compare-schedule').click()

  const outcomes = page.getByTestId('compare-outcome')
  await expect(outcomes).toHaveCount(3, { timeout: 60_000 })
  // Outcomes come from the replays: start-end breaks forbid, the other two hold on it (and
  // still have a trace to open).
  await expect(lab.outcome('start-end')).toHaveAttribute('data-outcome', 'forbid')
  await expect(lab.outcome('invalidate-range')).toHaveAttribute('data-outcome', 'holds')
  await expect(lab.outcome('arch-hook')).toHaveAttribute('data-outcome', 'holds')
  // One hint per holding policy, each naming the hook that dropped the entry in between.
  await expect(page.locator('[data-testid="compare-hint"][data-policy="invalidate-range"]')).toContainText(
    'mmu_notifier_invalidate_range',
  )
  await expect(page.locator('[data-testid="compare-hint"][data-policy="arch-hook"]')).toContainText(
    'mmu_notifier_arch_invalidate_secondary_tlbs',
  )
  // Each policy's why on a line of its own (shown at once in a tall window).
  await expect(page.locator('[data-testid="compare-detail"][data-policy="start-end"]')).toContainText(
    'r1 == 1',
  )
  await expect(page.locator('[data-testid="compare-detail"][data-policy="arch-hook"]')).toContainText(
    'no violation',
  )

  // The violating policy on the left, the first one that holds on the right, aligned row for row.
  await expect(lab.tracePane('left')).toHaveAttribute('data-policy', 'start-end')
  await expect(lab.tracePane('right')).toHaveAttribute('data-policy', 'invalidate-range')
  await expect(lab.tracePane('right').getByTestId('trace-outcome')).toHaveText('holds')
  const count = page.getByTestId('diff-count')
  await expect(count).toContainText(/^1\/\d+ difference/)
  const total = Number(/\/(\d+)/.exec((await count.textContent()) ?? '')![1])
  expect(total).toBeGreaterThan(0)

  // The first difference is selected: the inspector marks the state rows that differ.
  await expect(lab.tracePane('left').locator('[data-testid="trace-row"].sel')).toHaveAttribute(
    'data-differs',
    'true',
  )
  await expect(lab.inspector.getByTestId('inspector-diff-note')).toBeVisible()
  await lab.screenshot('20-compare-first-difference')

  // Next difference by key (N in a focused trace) and by button; previous goes back.
  const step = lab.inspector.getByTestId('inspector-step')
  const first = await step.textContent()
  await lab.tracePane('left').getByTestId('trace-scroller').focus()
  await page.keyboard.press('n')
  if (total > 1) {
    await expect(count).toContainText(/^2\//)
    await expect(step).not.toHaveText(first ?? '')
    await page.getByTestId('diff-prev').click()
    await expect(count).toContainText(/^1\//)
    await expect(step).toHaveText(first ?? '')
  }
  for (let i = 1; i < Math.min(total, 4); i++) await page.getByTestId('diff-next').click()
  await expect(count).toContainText(new RegExp(`^${Math.min(total, 4)}/`))
  await expect(lab.inspector.locator('tr[data-differs]').first()).toBeVisible()
  await lab.screenshot('21-compare-stepped')

  // Any policy's trace goes to either pane: arch-hook on the right.
  await lab.outcome('arch-hook').getByTestId('compare-right').click()
  await expect(lab.tracePane('right')).toHaveAttribute('data-policy', 'arch-hook')
  await expect(count).toContainText('difference')

  // The compare strip and the diff controls fit the smallest supported window.
  await page.setViewportSize({ width: 1024, height: 640 })
  await page.getByTestId('compare-details').click()
  await expect(page.getByTestId('compare-detail')).toHaveCount(0)
  await expect(page.getByTestId('diff-next')).toBeVisible()
  await expect(page.getByTestId('distinguish')).toBeVisible()
  const wide = await page.evaluate<{ scrollWidth: number; innerWidth: number }>(
    '({ scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth })',
  )
  expect(wide.scrollWidth).toBeLessThanOrEqual(wide.innerWidth)
  await lab.screenshot('25-compare-1024x640')
})

test('swimlane cells tell the hooks apart at 1400x900 and 1024x640, culprit rows keep their text, wrap shows full names', async ({
  page,
}) => {
  test.setTimeout(240_000)
  await page.setViewportSize({ width: 1400, height: 900 })
  await runForCompare()
  await lab.counterexample('start-end').getByTestId('compare-schedule').click()
  await expect(page.getByTestId('compare-outcome')).toHaveCount(3, { timeout: 60_000 })
  await lab.outcome('arch-hook').getByTestId('compare-right').click()
  await expect(lab.tracePane('right')).toHaveAttribute('data-policy', 'arch-hook')
  await expect(lab.tracePane('left')).toHaveAttribute('data-cells', 'compact')
  await checkCells(page, '1400x900')
  await lab.screenshot('26-cells-1400x900')

  await page.setViewportSize({ width: 1024, height: 640 })
  await page.getByTestId('traces-maximise').click()
  await checkCells(page, '1024x640 maximised')
  await lab.screenshot('27-cells-1024x640-maximised')

  // Wrap: every name in full, the row as tall as its text.
  const left = lab.tracePane('left')
  const cell = cellCalling(left, 'mmu_notifier_invalidate_range_start')
  const compactHeight = (await cell.boundingBox())!.height
  await page.getByTestId('cell-wrap').check()
  await expect(left).toHaveAttribute('data-cells', 'wrap')
  await expect(cell.getByTestId('trace-ev').first()).toContainText('mmu_notifier_invalidate_range_start')
  expect(await visibleText(cell)).toContain('mmu_notifier_invalidate_range_start')
  expect((await cell.boundingBox())!.height).toBeGreaterThan(compactHeight)
  await lab.screenshot('28-cells-wrap-1024x640')
  await page.getByTestId('cell-wrap').uncheck()
  await expect(left).toHaveAttribute('data-cells', 'compact')
  await page.getByTestId('traces-maximise').click()
})

test('the distinguishing schedule of start-end and arch-hook opens both traces, diffed', async ({ page }) => {
  test.setTimeout(180_000)
  await lab.runMatching(COW, PRESETS)
  await page.getByTestId('distinguish').click()
  await page.getByTestId('distinguish-a').selectOption('start-end')
  await page.getByTestId('distinguish-b').selectOption('arch-hook')
  await page.getByTestId('distinguish-go').click()
  const note = page.getByTestId('distinguish-note')
  await expect(note).toBeVisible({ timeout: 120_000 })
  await expect(note).toContainText('distinguishing schedule')
  await expect(page.getByTestId('compare-schedule-text')).toContainText('C0')
  await expect(lab.outcome('start-end')).toHaveAttribute('data-outcome', 'forbid')
  await expect(lab.outcome('arch-hook')).toHaveAttribute('data-outcome', 'holds')
  await expect(lab.tracePane('left')).toHaveAttribute('data-policy', 'start-end')
  await expect(lab.tracePane('right')).toHaveAttribute('data-policy', 'arch-hook')
  // The first difference is selected on open.
  await expect(page.getByTestId('diff-count')).toContainText(/^1\//)
  await expect(lab.tracePane('left').locator('[data-testid="trace-row"].sel')).toHaveAttribute(
    'data-differs',
    'true',
  )
  await lab.screenshot('22-distinguish')
  // The line naming the hook that made the difference, shown like the compare's hint.
  const hint = page.getByTestId('distinguish-hint')
  await expect(hint).toBeVisible()
  await expect(hint).toContainText(/mmu_notifier_[a-z_]+|invalidate_range_(start|end)|arch_invalidate/)
})

test('the COW trace marks its culprit steps, flags the stale entry, links kernel source and finds text', async ({
  page,
}) => {
  test.setTimeout(180_000)
  await lab.runMatching(COW, PRESETS)
  const cx = lab.counterexample('start-end')
  // The explanation lists the culprits with their roles, each a link to its row.
  const roles = await cx
    .getByTestId('cx-culprit')
    .evaluateAll((els) => els.map((e) => e.getAttribute('data-role')))
  for (const r of ['fill', 'pte-change', 'missed-flush', 'stale-use']) expect(roles).toContain(r)
  await cx.getByTestId('open-trace').click()
  const left = lab.tracePane('left')
  const links = left.getByTestId('culprit-link')
  await expect(links.first()).toBeVisible()
  // Each link selects its row, which carries the mark of its role.
  for (const role of ['fill', 'pte-change', 'stale-use']) {
    await left.locator(`[data-testid="culprit-link"][data-role="${role}"]`).first().click()
    const sel = left.locator('[data-testid="trace-row"].sel')
    await expect(sel).toHaveAttribute('data-culprit', new RegExp(role))
    await expect(sel.locator(`[data-testid="culprit-mark"][data-role="${role}"]`)).toBeVisible()
  }
  // At the stale use, the device's TLB entry disagrees with PTE A: flagged stale.
  await expect(lab.inspector.getByTestId('stale-flag').first()).toBeVisible()
  await lab.screenshot('23-causal-marks')

  // Kernel functions link to their source at the modelled version; hardware actions do not.
  await left.locator('[data-testid="culprit-link"][data-role="pte-change"]').first().click()
  const link = lab.inspector.getByTestId('kernel-link').filter({ hasText: 'ptep_clear_flush' }).first()
  await expect(link).toHaveAttribute('href', 'https://elixir.bootlin.com/linux/v6.6/A/ident/ptep_clear_flush')
  await expect(link).toHaveAttribute('target', '_blank')
  await expect(link).toHaveAttribute('rel', /noopener/)

  // Find: the virtual list's rows off screen are searched too.
  await left.getByTestId('trace-scroller').focus()
  await page.keyboard.press('ControlOrMeta+f')
  const box = left.getByTestId('trace-search-input')
  await expect(box).toBeFocused()
  await box.fill('mmu_notifier_invalidate_range_end')
  await expect(left.getByTestId('trace-search-count')).toHaveText(/^\d+ match/)
  await box.press('Enter')
  await expect(left.getByTestId('trace-search-count')).toHaveText(/^1\//)
  await expect(
    lab.inspector
      .getByTestId('inspector-event')
      .filter({ hasText: 'mmu_notifier_invalidate_range_end' })
      .first(),
  ).toBeVisible()
  await box.fill('no such function anywhere')
  await expect(left.getByTestId('trace-search-count')).toHaveText('no match')
  await box.fill('pte_offset_map_lock')
  await box.press('Enter')
  await box.press('Shift+Enter')
  await lab.screenshot('24-trace-find')
})

test('compare shows one hook hint per holding policy, the right pane first, and why lines expand', async ({
  page,
}) => {
  test.setTimeout(180_000)
  await runForCompare()
  await lab.counterexample('start-end').getByTestId('compare-schedule').click()
  const outcomes = page.getByTestId('compare-outcome')
  await expect(outcomes).toHaveCount(3, { timeout: 60_000 })
  const holding = await outcomes.evaluateAll((els) =>
    els.filter((e) => e.getAttribute('data-outcome') === 'holds').map((e) => e.getAttribute('data-policy')!),
  )
  expect(holding.length).toBeGreaterThan(0)
  const hints = page.getByTestId('compare-hint')
  await expect(hints).toHaveCount(holding.length)
  const named = await hints.evaluateAll((els) => els.map((e) => e.getAttribute('data-policy')))
  expect([...named].sort()).toEqual([...holding].sort())
  for (const h of await hints.all())
    await expect(h).toContainText(/mmu_notifier_|invalidate_range_|arch_invalidate/)
  // The policy in the right pane has its hint first.
  await lab.outcome('arch-hook').getByTestId('compare-right').click()
  await expect(hints.first()).toHaveAttribute('data-policy', 'arch-hook')
  await lab.outcome('invalidate-range').getByTestId('compare-right').click()
  await expect(hints.first()).toHaveAttribute('data-policy', 'invalidate-range')
  // A why line is one line until clicked, then shows all of its text.
  const why = page.locator('[data-testid="compare-detail"][data-policy="start-end"]')
  const h1 = (await why.boundingBox())!.height
  await why.click()
  await expect(why).toHaveAttribute('aria-expanded', 'true')
  expect((await why.boundingBox())!.height).toBeGreaterThan(h1)
  await lab.screenshot('29-compare-hints')
})
