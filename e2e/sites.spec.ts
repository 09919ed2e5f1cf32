/**
 * The site grid (issue 14) against the browser host: every site grouped by kernel path with its
 * docs, a placement filled from arch-hook in one click, one site switched off and the run showing
 * it break beside the presets, the placement's trace compared with arch-hook's, and the
 * placement kept across a reload. Screenshots go to test-results/screenshots/.
 */
import { readFileSync } from 'node:fs'
import path from 'node:path'
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
  // The presets x variants toggles above the grid keep their room (scrolled to, and clickable).
  const kn = page.getByTestId('policy-arch-hook+kernel-notifier')
  await kn.check()
  expect((await kn.boundingBox())!.height).toBeGreaterThan(5)
  await expect(page.getByTestId('policy-list')).toHaveValue(/arch-hook\+kernel-notifier/)
  const m = await page.evaluate<[number, number]>('[document.documentElement.scrollWidth, window.innerWidth]')
  expect(m[0], 'the page scrolls sideways').toBeLessThanOrEqual(m[1])
  await lab.screenshot('sites-04-small-window')
})

/**
 * Two munmap scenarios on an ATS device (flush_at: start): every placement that invalidates the
 * IOTLB and ATC between the PTE clear and the free holds. In v6.6 munmap that is
 * tlb_finish_mmu's flush_tlb_range (arch-hook); in v4.15 ->invalidate_range from range_end or
 * from tlb_flush_mmu_tlbonly; start/end alone lets the device re-walk the PTE after _start.
 */
const MUNMAPS = ['munmap-uaf.ats.yaml', 'munmap-uaf.btm-ats.yaml']

test('the synthesis view: the cheapest placements over two munmap scenarios, the table, the front and a certificate', async ({
  page,
  lab,
}) => {
  test.setTimeout(150_000)
  // A placement of the grid goes along, beside the presets, under its name.
  await page.getByTestId('placement-from').selectOption('arch-hook')
  await page.getByTestId('placement-new').click()
  await page.getByTestId('placement-name').fill('no-range-flush')
  await page.getByTestId('placement-name').press('Enter')
  await site(page, 'no-range-flush', 'flush_tlb_range').uncheck()

  await page.getByTestId('tab-synthesis').click()
  await page.getByTestId('synthesis-filter').fill('munmap-uaf.')
  for (const s of MUNMAPS) await page.locator(`[data-testid="synthesis-scenario"][data-path="${s}"]`).check()
  await lab.screenshot('sites-05-synthesis-form')
  await page.getByTestId('synthesis-start').click()
  await expect(page.getByTestId('synthesis-status')).toHaveAttribute('data-status', 'finished', {
    timeout: 120_000,
  })

  // The minimal placements: one site each, the cheapest first.
  const minimal = page.getByTestId('synthesis-minimal')
  await expect(minimal).toHaveCount(3)
  await expect(minimal.first()).toHaveAttribute('data-placement', 'sites:range_end')
  const names = await minimal.evaluateAll((els) => els.map((e) => e.getAttribute('data-placement')))
  expect([...names].sort()).toEqual([
    'sites:flush_tlb_range',
    'sites:range_end',
    'sites:tlb_flush_mmu_tlbonly',
  ])

  // The table: placements x scenarios, with the presets and the grid's placement.
  const row = (p: string) => page.locator(`[data-testid="synthesis-row"][data-placement="${p}"]`)
  const cellOf = (p: string, s: string) =>
    row(p).locator(`[data-testid="synthesis-cell"][data-scenario="${s}"]`)
  for (const s of MUNMAPS) {
    await expect(cellOf('start-end', s)).toHaveAttribute('data-verdict', 'violated')
    await expect(cellOf('arch-hook', s)).toHaveAttribute('data-verdict', 'holds')
    await expect(cellOf('sites:range_end', s)).toHaveAttribute('data-verdict', 'holds')
  }
  await expect(row('sites:range_end')).toHaveAttribute('data-kinds', /minimal/)
  await expect(row('no-range-flush')).toHaveAttribute('data-kinds', /yours/)
  await expect(cellOf('no-range-flush', MUNMAPS[0]!)).toHaveAttribute('data-verdict', 'violated')
  await expect(page.getByTestId('synthesis-cost')).toContainText('explored')
  await lab.screenshot('sites-06-synthesis-result')

  // Each site of a minimal placement has its certificate; the counterexample opens in the traces:
  // the placement without the site breaks, the minimal one holds on the same schedule.
  const cert = minimal.first().locator('[data-testid="certificate"][data-site="range_end"]')
  await expect(cert).toHaveAttribute('data-kind', 'needed')
  await expect(cert).toContainText('use-after-free')
  await expect(
    minimal.first().locator('[data-testid="certificate"][data-site="flush_tlb_all"]'),
  ).toHaveAttribute('data-kind', 'never-reached')
  await cert.getByTestId('certificate-open').click()
  await expect(page.getByTestId('pick-left').locator('option:checked')).toContainText(
    'certificate #1 range_end',
  )
  await expect(
    lab.tracePane('left').locator('[data-testid="trace-row"][data-violation]').first(),
  ).toBeVisible()
  await expect(page.getByTestId('pick-right').locator('option:checked')).toContainText(
    'sites:range_end (holds)',
  )

  // The front's best point opens its placement in the site grid.
  await page.getByTestId('synthesis-chart').scrollIntoViewIfNeeded()
  await lab.screenshot('sites-07-synthesis-chart')
  await page.locator('[data-testid="front-point"][data-held="2"]').click()
  const opened = page.locator('[data-testid="placement-head"].active')
  await expect(opened).toHaveAttribute('data-placement', 'synth')
  await expect(site(page, 'synth', 'range_end')).toBeChecked()
  await expect(site(page, 'synth', 'flush_tlb_range')).not.toBeChecked()
  await lab.screenshot('sites-08-synthesis-opens-placement')

  // Add to notebook: disabled (saying why) until a saved notebook is open; then the search and
  // its result become a synthesis cell, current, and the notebook saves with Ctrl+S.
  await page.getByTestId('tab-synthesis').click()
  const add = page.getByTestId('synthesis-add-to-notebook')
  await expect(add).toBeDisabled()
  await expect(add).toHaveAttribute('title', /Open or create a notebook/)
  await page.getByTestId('tab-notebook').click()
  await page.getByTestId('nb-new').click()
  await page.getByTestId('nb-save-as').click()
  await page.getByTestId('nb-save-as-path').fill('e2e-synthesis')
  await page.getByTestId('nb-save-as-submit').click()
  await expect(page.getByTestId('nb-file')).toHaveText('e2e-synthesis.mnlab.yaml')
  await page.getByTestId('tab-synthesis').click()
  await expect(add).toBeEnabled()
  await add.click()
  await expect(page.getByTestId('synthesis-notebook-note')).toHaveText(
    'Added synthesis-1 with its result to the notebook.',
  )
  await page.getByTestId('tab-notebook').click()
  const synthCell = page.locator('[data-testid="nb-synthesis"][data-cell="synthesis-1"]')
  await expect(synthCell.getByTestId('nb-status')).toHaveAttribute('data-status', 'current')
  await expect(page.getByTestId('nb-dirty')).toBeVisible()
  await page.keyboard.press('ControlOrMeta+s')
  await expect(page.getByTestId('nb-dirty')).toHaveCount(0)
  const nbDir = process.env.MNLAB_NOTEBOOKS
  if (!nbDir) throw new Error('MNLAB_NOTEBOOKS is not set: run through playwright.config.ts')
  const saved = readFileSync(path.join(nbDir, 'e2e-synthesis.mnlab.yaml'), 'utf8')
  expect(saved).toContain('kind: synthesis')
  expect(saved).toContain('../scenarios/munmap-uaf.ats.yaml')
  await lab.screenshot('sites-08b-synthesis-in-notebook')
})

test('a synthesis over the whole catalogue can be cancelled', async ({ page, lab }) => {
  await page.getByTestId('tab-synthesis').click()
  await page.getByTestId('synthesis-pick-shown').click()
  await page.getByTestId('synthesis-start').click()
  await expect(page.getByTestId('synthesis-progress')).toBeVisible()
  await page.getByTestId('synthesis-cancel').click()
  await expect(page.getByTestId('synthesis-status')).toHaveAttribute('data-status', 'cancelled', {
    timeout: 30_000,
  })
  await expect(page.getByTestId('synthesis-start')).toBeEnabled()
  await lab.screenshot('sites-09-synthesis-cancelled')
})

test('a notebook keeps the placements its experiments run in its policies:, across a reload', async ({
  page,
  lab,
}) => {
  test.setTimeout(150_000)
  const dir = process.env.MNLAB_NOTEBOOKS
  if (!dir) throw new Error('MNLAB_NOTEBOOKS is not set: run through playwright.config.ts')
  await page.getByTestId('placement-from').selectOption('arch-hook')
  await page.getByTestId('placement-new').click()
  await page.getByTestId('placement-name').fill('no-range-flush')
  await page.getByTestId('placement-name').press('Enter')
  await site(page, 'no-range-flush', 'flush_tlb_range').uncheck()
  await lab.openScenario(MUNMAP)
  await lab.selectPolicies(['arch-hook', 'no-range-flush'])

  await page.getByTestId('tab-notebook').click()
  await page.getByTestId('nb-new').click()
  await page.getByTestId('nb-add-experiment').click()
  const defined = page.locator('[data-testid="nb-policy"][data-policy="no-range-flush"]')
  await expect(defined).toContainText('flush_tlb_page, flush_tlb_mm, arch_tlbbatch_add_pending')
  const cell = page.getByTestId('nb-experiment').first()
  await cell.getByTestId('nb-run-cell').click()
  const verdict = (p: string) => cell.locator(`[data-testid="nb-verdict"][data-policy="${p}"]`)
  await expect(verdict('no-range-flush')).toHaveAttribute('data-verdict', 'violated', { timeout: 90_000 })
  await expect(verdict('arch-hook')).toHaveAttribute('data-verdict', 'holds')
  await page.getByTestId('nb-save-as').click()
  await page.getByTestId('nb-save-as-path').fill('e2e-sites')
  await page.getByTestId('nb-save-as-submit').click()
  await expect(page.getByTestId('nb-file')).toHaveText('e2e-sites.mnlab.yaml')
  const onDisk = readFileSync(path.join(dir, 'e2e-sites.mnlab.yaml'), 'utf8')
  expect(onDisk).toMatch(/^policies:\n\s+no-range-flush:/m)
  await lab.screenshot('sites-10-notebook-policies')

  // The grid forgets it; the notebook brings it back after a reload, and its result is current.
  await page.locator('[data-testid="placement-head"][data-placement="no-range-flush"]').click()
  await page.getByTestId('placement-delete').click()
  await page.reload()
  await lab.open(page.url())
  await expect(page.locator('[data-testid="placement-head"]')).toHaveCount(0)
  await page.getByTestId('tab-notebook').click()
  await page.getByTestId('nb-open').click()
  await page.getByTestId('nb-open-path').fill('e2e-sites.mnlab.yaml')
  await page.getByTestId('nb-open-submit').click()
  await expect(defined).toBeVisible()
  await expect(page.getByTestId('nb-experiment').first().getByTestId('nb-status')).toHaveAttribute(
    'data-status',
    'current',
  )
  await expect(site(page, 'no-range-flush', 'flush_tlb_range')).not.toBeChecked()
  await expect(site(page, 'no-range-flush', 'flush_tlb_page')).toBeChecked()
})
