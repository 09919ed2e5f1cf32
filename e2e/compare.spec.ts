/**
 * Compare and explain (issue 12) against the browser host: a COW-ordering counterexample
 * replayed on its schedule under the three presets and its differences stepped through; the
 * distinguishing schedule of start-end and arch-hook; the causal marks, stale flag, kernel
 * source links and find on the violating trace. Screenshots go to test-results/screenshots/.
 */
import { expect } from '@playwright/test'
import { COW, PRESETS, test } from './labPage'

test.describe.configure({ mode: 'serial' })

test('compare a counterexample on its schedule under all three presets and step through the differences', async ({
  page,
  lab,
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
  await expect(page.getByTestId('compare-hint')).not.toBeEmpty()
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

test('the distinguishing schedule of start-end and arch-hook opens both traces, diffed', async ({
  page,
  lab,
}) => {
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
})

test('the COW trace marks its culprit steps, flags the stale entry, links kernel source and finds text', async ({
  page,
  lab,
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
