/**
 * The site grid (issue 14) against the browser host: every site grouped by kernel path with its
 * docs, a placement filled from arch-hook in one click, one site switched off and the run showing
 * it break beside the presets, the placement's trace compared with arch-hook's, and the
 * placement kept across a reload. Screenshots go to test-results/screenshots/.
 */
import { expect, type Page } from '@playwright/test'
import { test } from './labPage'

/**
 * munmap of a page an ATS device caches (flush_at: start). Under v6.6 the IOTLB and ATC hear of
 * the unmap only from tlb_finish_mmu -> tlb_flush -> flush_tlb_mm_range(start, end), the
 * flush_tlb_range site, before free_pages_and_swap_cache frees the page: arch-hook holds, and
 * arch-hook without flush_tlb_range leaves the device a use-after-free.
 */
const MUNMAP = 'munmap-uaf.ats.yaml'

test.describe.configure({ mode: 'serial' })

const site = (page: Page, placement: string, s: string) =>
  page.locator(`[data-testid="site-cell"][data-placement="${placement}"][data-site="${s}"]`)

test('the site grid: sites by kernel path with their docs, a placement from a preset, one site off breaks the run', async ({
  page,
  lab,
}) => {
  test.setTimeout(150_000)
  const grid = page.getByTestId('site-grid')
  await expect(grid).toBeVisible()
  // Grouped by kernel path: the presets' families, then the proposals.
  const groups = await grid
    .locator('tr.group')
    .evaluateAll((els) => els.map((e) => e.getAttribute('data-group')))
  expect(groups.slice(0, 3)).toEqual(['start-end', 'invalidate-range', 'arch-hook'])
  expect(groups).toContain('upgrade-notify')
  await expect(grid.locator('tr.proposals')).toHaveCount(1)
  // Each site's tooltip says where it sits in the kernel and what a secondary does there.
  const name = grid.locator('tr.site[data-site="flush_tlb_range"] [data-testid="site-name"]')
  await expect(name).toHaveAttribute('title', /Kernel: v6\.6 .*__flush_tlb_range/s)
  await expect(name).toHaveAttribute('title', /Secondary: arch_invalidate_secondary_tlbs/)

  // A placement filled from arch-hook in one click, named, and run beside the presets.
  await page.getByTestId('placement-from').selectOption('arch-hook')
  await page.getByTestId('placement-new').click()
  const field = page.getByTestId('placement-name')
  await field.fill('no-range-flush')
  await field.press('Enter')
  const head = page.locator('[data-testid="placement-head"][data-placement="no-range-flush"]')
  await expect(head).toBeVisible()
  await expect(page.getByTestId('placement-same')).toContainText('the set of arch-hook')
  await expect(site(page, 'no-range-flush', 'flush_tlb_range')).toBeChecked()
  await expect(site(page, 'no-range-flush', 'range_end')).not.toBeChecked()

  // Switch flush_tlb_range off.
  await site(page, 'no-range-flush', 'flush_tlb_range').uncheck()
  await expect(page.getByTestId('placement-same')).not.toContainText('the set of')
  await lab.openScenario(MUNMAP)
  await lab.selectPolicies(['arch-hook', 'no-range-flush'])
  await expect(head.getByTestId('placement-run')).toBeChecked()
  await lab.screenshot('sites-01-grid')
  await lab.run()
  await expect(lab.overall('arch-hook')).toHaveAttribute('data-match', 'true')
  await expect(lab.cell('arch-hook', 'use-after-free')).toHaveAttribute('data-verdict', 'holds')
  await expect(lab.cell('no-range-flush', 'use-after-free')).toHaveAttribute('data-verdict', 'violated')
  await lab.screenshot('sites-02-breaks')

  // Its counterexample compared with arch-hook on the same schedule (the placement travels with
  // the compare request): arch-hook holds there.
  await lab.counterexample('no-range-flush').getByTestId('compare-schedule').click()
  await expect(lab.outcome('no-range-flush')).toContainText('use-after-free')
  await expect(lab.outcome('arch-hook')).toContainText('holds')
  await lab.screenshot('sites-03-compare')

  // Back on: the placement is arch-hook's set again.
  await site(page, 'no-range-flush', 'flush_tlb_range').check()
  await expect(page.getByTestId('placement-same')).toContainText('the set of arch-hook')
})

test('placements survive a reload, and a bad name is refused with the reason', async ({ page, lab }) => {
  // Each test has a fresh browser profile: make the placement again.
  await page.getByTestId('placement-from').selectOption('arch-hook')
  await page.getByTestId('placement-new').click()
  await page.getByTestId('placement-name').fill('no-range-flush')
  await page.getByTestId('placement-name').press('Enter')
  await site(page, 'no-range-flush', 'flush_tlb_range').uncheck()
  await page.reload()
  await lab.open(page.url())
  const head = page.locator('[data-testid="placement-head"][data-placement="no-range-flush"]')
  await expect(head).toBeVisible()
  await expect(site(page, 'no-range-flush', 'flush_tlb_range')).not.toBeChecked()
  await expect(site(page, 'no-range-flush', 'flush_tlb_page')).toBeChecked()
  await head.click()
  const field = page.getByTestId('placement-name')
  await field.fill('arch-hook+pri-flush')
  await field.press('Enter')
  await expect(page.getByTestId('placement-error')).toContainText('letters, digits')
  await field.fill('arch-hook')
  await field.press('Enter')
  await expect(page.getByTestId('placement-error')).toContainText('built-in policy')
  await page.getByTestId('placement-delete').click()
  await expect(head).toHaveCount(0)
})

test('at 1024x640 the site grid scrolls inside the policy panel and leaves the scenario list its room', async ({
  page,
  lab,
}) => {
  await page.setViewportSize({ width: 1024, height: 640 })
  await page.reload()
  await lab.open(page.url())
  await page.getByTestId('placement-from').selectOption('start-end')
  await page.getByTestId('placement-new').click()
  const list = (await page.locator('.side > :first-child').boundingBox())!
  expect(list.height, 'the scenario list is squeezed out').toBeGreaterThanOrEqual(150)
  const panel = page.getByTestId('policy-panel')
  const [scrollH, clientH] = await panel.evaluate((el) => [el.scrollHeight, el.clientHeight])
  expect(scrollH, 'the policy panel should scroll rather than grow').toBeGreaterThan(clientH)
  // The last site's box is reachable by scrolling the panel, inside the sidebar.
  const last = page.locator('[data-testid="site-cell"][data-site="flush_tlb_all"]').first()
  await last.scrollIntoViewIfNeeded()
  const side = (await page.locator('.side').boundingBox())!
  const box = (await last.boundingBox())!
  expect(box.x + box.width).toBeLessThanOrEqual(side.x + side.width)
  expect(box.y + box.height).toBeLessThanOrEqual(side.y + side.height)
  await last.check()
  await expect(page.getByTestId('placement-same')).toContainText('3 sites')
  const m = await page.evaluate<[number, number]>('[document.documentElement.scrollWidth, window.innerWidth]')
  expect(m[0], 'the page scrolls sideways').toBeLessThanOrEqual(m[1])
  await lab.screenshot('sites-04-small-window')
})
