/**
 * The workbench's core flow against the browser host (issue 3, "Tests"): the COW-ordering
 * matrix matches `expect`, the violating trace shows its step, a broken YAML gets its marker at
 * the right line, two traces side by side, a long run cancelled, a file saved and reopened.
 * Screenshots of the main views go to test-results/screenshots/.
 */
import { writeFileSync } from 'node:fs'
import path from 'node:path'
import { expect } from '@playwright/test'
import { COW, PRESETS, test } from './labPage'

const UPGRADE = 'upgrade-loop.smmu-no-btm.yaml'

test.describe.configure({ mode: 'serial' })

test('COW ordering: the matrix matches expect and the violating trace shows its step', async ({
  page,
  lab,
}) => {
  test.setTimeout(180_000)
  await lab.screenshot('01-start')
  // The page took its token and dropped it from the address bar (history, copied URLs).
  expect(page.url()).not.toContain('token=')
  await lab.openScenario(COW)
  await lab.selectPolicies(PRESETS)
  await lab.run(150_000)
  await expect(page.getByTestId('progress')).toHaveAttribute('data-status', 'finished')
  await expect(lab.matrix).toBeVisible()
  for (const p of PRESETS) {
    await expect(lab.overall(p)).toHaveAttribute('data-match', 'true')
  }
  await expect(lab.cell('start-end', 'forbid')).toHaveAttribute('data-verdict', 'violated')
  await expect(lab.cell('invalidate-range', 'forbid')).toHaveAttribute('data-verdict', 'holds')
  await expect(lab.cell('arch-hook', 'forbid')).toHaveAttribute('data-verdict', 'holds')
  await expect(page.getByTestId('metrics-chart').locator('canvas').first()).toBeVisible()

  const cx = page.locator('[data-testid="counterexample"][data-policy="start-end"]').first()
  await expect(cx.getByTestId('why')).not.toBeEmpty()
  await cx.getByTestId('open-trace').click()
  const left = lab.tracePane('left')
  const violating = left.locator('[data-testid="trace-row"][data-violation]')
  await expect(violating).toBeVisible()
  await violating.click()
  await expect(lab.inspector.getByTestId('inspector-step')).toContainText(
    (await violating.getAttribute('data-step')) ?? '',
  )
  await expect(lab.inspector.getByTestId('inspector-event').first()).toBeVisible()
  // The whole machine after the step, not only what changed: both PTEs, the IOMMU TLB, frames.
  const state = lab.inspector.getByTestId('inspector-state')
  await expect(state).toContainText('PTE A')
  await expect(state).toContainText('PTE B')
  await expect(state).toContainText('iommu TLB')
  await expect(state).toContainText('pfn 1')
  await lab.screenshot('02-cow-matrix-trace')

  // Replay the schedule in scripted mode: the replayed trace ends in the same violation.
  await cx.getByTestId('replay').click()
  await expect(page.getByTestId('pick-left').locator('option:checked')).toContainText('replay')
  await expect(left.locator('[data-testid="trace-row"][data-violation]')).toBeVisible()
})

test('a broken scenario gets a marker at the right line, and Run reports it inline', async ({
  page,
  lab,
}) => {
  await lab.openScenario(UPGRADE)
  // Line 9 of the file is `  C0: [write_fault P]`: an unknown op is the engine's error, not YAML's.
  await expect.poll(() => lab.editorText()).toContain('C0: [write_fault P]')
  await lab.replaceLine(9, 'C0: [frobnicate P]')
  const issue = page.getByTestId('issue').first()
  await expect(issue).toContainText('9:')
  await expect(issue).toContainText('frobnicate')
  // The engine's marker (owner 'mnlab') squiggles line 9 and nothing else.
  await expect.poll(() => lab.squiggleLines()).toEqual([9])
  await lab.screenshot('03-broken-yaml')
  // The host answers startRun on an invalid scenario with HTTP 400, which Chromium logs.
  lab.allow(/status of 400/)
  await lab.runButton.click()
  await expect(page.getByTestId('run-error')).toBeVisible()
  await expect(page.getByTestId('progress')).toHaveAttribute('data-status', 'failed')
})

test('the upgrade scenario: two policies side by side with synchronised scrolling', async ({ page, lab }) => {
  await lab.openScenario(UPGRADE)
  await lab.selectPolicies(PRESETS)
  await lab.run()
  for (const p of PRESETS) await expect(lab.overall(p)).toHaveAttribute('data-match', 'true')
  await expect(lab.cell('arch-hook', 'progress')).toHaveAttribute('data-verdict', 'holds')
  await expect(lab.cell('start-end', 'progress')).toHaveAttribute('data-verdict', 'violated')

  await page
    .locator('[data-testid="counterexample"][data-policy="start-end"]')
    .first()
    .getByTestId('open-trace')
    .click()
  await page
    .locator('[data-testid="counterexample"][data-policy="invalidate-range"]')
    .first()
    .getByTestId('open-trace-right')
    .click()
  const left = lab.tracePane('left')
  const right = lab.tracePane('right')
  await expect(left.getByTestId('trace-row').first()).toBeVisible()
  await expect(right.getByTestId('trace-row').first()).toBeVisible()
  await expect(left.locator('[data-testid="trace-row"][data-violation]')).toHaveCount(1)
  await expect(right.locator('[data-testid="trace-row"][data-violation]')).toHaveCount(1)

  const ls = left.getByTestId('trace-scroller')
  const rs = right.getByTestId('trace-scroller')
  const scrollable = await ls.evaluate((el) => el.scrollHeight > el.clientHeight + 20)
  if (scrollable) {
    await ls.evaluate((el) => {
      el.scrollTop = 40
    })
    await expect.poll(() => rs.evaluate((el) => el.scrollTop)).toBeGreaterThan(0)
  }
  await lab.screenshot('04-side-by-side')

  // "Copy as LKML timeline": [Time N] blocks naming the thread that acts, ready for a mail.
  await page.context().grantPermissions(['clipboard-read', 'clipboard-write'])
  const cx = page.locator('[data-testid="counterexample"][data-policy="start-end"]').first()
  await cx.getByTestId('copy-lkml').click()
  await expect(cx.getByTestId('lkml-copied')).toHaveText(/Copied/)
  // A string expression: the e2e tsconfig has no DOM types.
  const mail = await page.evaluate<string>('navigator.clipboard.readText()')
  expect(mail).toMatch(/^\[Time N\] -+$/m)
  expect(mail).toMatch(/^DEV-thread-0 {2}\{write P 7; /m)
  // Condensed: only the acting thread per block, every line within a mail's 72 columns.
  expect(mail).not.toMatch(/\{\}/)
  expect(mail.split('\n').filter((l) => l.length > 72)).toEqual([])
  expect(mail).toContain('repeats forever')
  expect(mail).toContain('policy: start-end')
  await expect(page.getByTestId('lkml-error')).toHaveCount(0)
})

test('kernel mappings: the kernel-notifier variant column, and a step inspector with init_mm and the ATC', async ({
  page,
  lab,
}) => {
  await lab.openScenario('vmalloc-reuse.supervisor-pasid.yaml')
  // The grid has a column per variant; ticking +kernel-mn on a preset adds that policy.
  const kn = page.getByTestId('policy-arch-hook+kernel-notifier')
  await lab.selectPolicies(['arch-hook'])
  await kn.check()
  await expect(page.getByTestId('policy-list')).toHaveValue('arch-hook, arch-hook+kernel-notifier')
  await lab.run()
  await expect(lab.overall('arch-hook')).toHaveAttribute('data-match', 'true')
  await expect(lab.overall('arch-hook+kernel-notifier')).toHaveAttribute('data-match', 'true')
  await expect(lab.cell('arch-hook', 'use-after-free')).toHaveAttribute('data-verdict', 'violated')
  await expect(lab.cell('arch-hook+kernel-notifier', 'use-after-free')).toHaveAttribute(
    'data-verdict',
    'holds',
  )
  const cx = page.locator('[data-testid="counterexample"][data-policy="arch-hook"]').first()
  await cx.getByTestId('open-trace').click()
  const violating = lab.tracePane('left').locator('[data-testid="trace-row"][data-violation]')
  await violating.click()
  const state = lab.inspector.getByTestId('inspector-state')
  await expect(state).toContainText('kernel PTE K')
  await expect(state).toContainText('flag ring')
  await lab.screenshot('06-kernel-notifier')

  // ATS: the inspector shows the IOTLB and the device ATC as two rows.
  const ats = await lab.violatingState('munmap-uaf.atc-first.yaml', ['arch-hook'], 'arch-hook')
  await expect(ats).toContainText('iommu IOTLB')
  await expect(ats).toContainText('iommu ATC')
})

test('lost dirty data and a walk cache: the matrix, the why line, and the machine state', async ({
  page,
  lab,
}) => {
  // Writeback (2022 race, row 14): the lost-dirty column and the folio / disk rows.
  await lab.openScenario('zap-writeback.device.yaml')
  await lab.selectPolicies(['start-end', 'arch-hook'])
  await lab.run()
  await expect(lab.overall('start-end')).toHaveAttribute('data-match', 'true')
  await expect(lab.cell('start-end', 'lost-dirty')).toHaveAttribute('data-verdict', 'violated')
  await expect(lab.cell('arch-hook', 'lost-dirty')).toHaveAttribute('data-verdict', 'holds')
  const cx = page.locator('[data-testid="counterexample"][data-policy="start-end"]').first()
  await expect(cx.getByTestId('why')).toContainText('disk(')
  await cx.getByTestId('open-trace').click()
  await lab.tracePane('left').locator('[data-testid="trace-row"]').last().click()
  const state = lab.inspector.getByTestId('inspector-state')
  await expect(state).toContainText('folio F')
  await lab.screenshot('07-lost-dirty')

  // THP collapse with a leaf-only walk cache (khugepaged, §5.8): the PTE table and walk-cache rows.
  const thp = await lab.violatingState('thp-collapse.walk-cache-leaf-only.yaml', ['arch-hook'], 'arch-hook')
  await expect(thp).toContainText('PTE table')
  await expect(thp).toContainText('walk cache')
  await lab.screenshot('08-thp-walk-cache')
})

test('a long run shows progress and cancels promptly', async ({ page, lab }) => {
  test.setTimeout(120_000)
  await lab.openScenario(COW)
  await lab.selectPolicies(PRESETS)
  await lab.runButton.click()
  await expect(lab.progress).toHaveAttribute('data-status', 'running')
  await expect(lab.progress.locator('.pp b').first()).not.toHaveText('0', { timeout: 15_000 })
  await lab.screenshot('05-progress')
  await lab.cancelButton.click()
  await expect(lab.progress).toHaveAttribute('data-status', 'cancelled', { timeout: 5_000 })
  await expect(page.getByTestId('run-cancelled')).toBeVisible()
})

test('the first counterexample opens while exploration goes on; stop at the first violation ends early', async ({
  page,
  lab,
}) => {
  test.setTimeout(180_000)
  await lab.openScenario(COW)
  await lab.selectPolicies(['start-end', 'arch-hook'])
  await lab.runButton.click()
  // start-end's forbid counterexample is found long before its exploration ends.
  const first = lab.progress.locator('[data-testid="first-found"][data-policy="start-end"]')
  await expect(first).toBeVisible({ timeout: 60_000 })
  await expect(first).toContainText('forbid')
  await first.click()
  const violating = lab.tracePane('left').locator('[data-testid="trace-row"][data-violation]')
  await expect(violating).toBeVisible()
  await lab.screenshot('09-first-found')
  await expect(lab.progress).toHaveAttribute('data-status', 'finished', { timeout: 150_000 })
  await expect(lab.cell('start-end', 'use-after-free')).toHaveAttribute('data-verdict', 'holds')

  await page.getByTestId('stop-at-first').check()
  await lab.selectPolicies(['start-end'])
  await lab.run(150_000)
  await expect(lab.cell('start-end', 'forbid')).toHaveAttribute('data-verdict', 'violated')
  // Stopped at the first violation: the invariants not explored to the end stay unknown.
  await expect(lab.cell('start-end', 'use-after-free')).toHaveAttribute('data-verdict', 'unknown')
  await page.getByTestId('stop-at-first').uncheck()
})

test('save a new scenario and reopen it', async ({ page, lab }) => {
  await page.getByTestId('new-button').click()
  const discard = page.getByTestId('discard-prompt')
  if (await discard.isVisible()) await discard.getByRole('button', { name: 'Discard' }).click()
  const name = `e2e-saved-${Date.now()}.yaml`
  await expect.poll(() => lab.editorText()).toMatch(/^title:/)
  await lab.replaceLine(1, 'title: Saved from the e2e spec')
  await expect(page.getByTestId('dirty-marker')).toBeVisible()
  await page.keyboard.press('ControlOrMeta+s')
  await page.getByTestId('path-input').fill(name)
  await page.getByTestId('path-ok').click()
  await expect(page.getByTestId('current-file')).toContainText(name)
  await expect(page.getByTestId('dirty-marker')).toHaveCount(0)
  await expect(lab.scenario(name)).toContainText('Saved from the e2e spec')

  await lab.openScenario(UPGRADE)
  await lab.openScenario(name)
  await expect.poll(() => lab.editorText()).toContain('title: Saved from the e2e spec')

  // A file that does not load is still listed, marked bad, with its error.
  writeFileSync(path.join(process.env.MNLAB_SCENARIOS ?? '', 'e2e-bad.yaml'), 'title: [unclosed\n')
  await page.getByTitle('Reload the list').click()
  await expect(lab.scenario('e2e-bad.yaml')).toHaveAttribute('data-bad', 'true')
  await lab.screenshot('06-saved-reopened')
})

test('a 10,000-step trace stays virtualised and scrolls in sync', async ({ page, lab }) => {
  test.setTimeout(120_000)
  // munmap-uaf.flush-at-start with a CPU thread that first writes another page 10,000 times.
  const n = 10_000
  const file = 'e2e-long-trace.yaml'
  writeFileSync(
    path.join(process.env.MNLAB_SCENARIOS ?? '', file),
    [
      'title: Long trace (10,000 steps) for the virtualised trace view',
      'arch: x86_64',
      'pages:',
      '  P: { value: 5, prot: rw }',
      '  Q: { value: 0, prot: rw }',
      'secondary:',
      '  - { name: iommu, type: hw-walker, flush_at: start, cached: [P] }',
      'cpus:',
      '  C0: [munmap P]',
      `  C1: [${Array(n).fill('write Q 1').join(', ')}]`,
      'devices:',
      '  D0: { via: iommu, ops: [write P 1, write P 2] }',
      '',
    ].join('\n'),
  )
  await page.getByTitle('Reload the list').click()
  await lab.openScenario(file)
  await lab.selectPolicies(['start-end'])
  await page.getByTestId('mode-scripted').check()
  await page
    .getByTestId('schedule')
    .fill([...Array(n).fill('C1'), ...'C0 C0 C0 D0 C0 C0 C0 C0 D0'.split(' ')].join(' '))
  await lab.run()
  await expect(lab.cell('start-end', 'use-after-free')).toHaveAttribute('data-verdict', 'violated')
  const cx = page.locator('[data-testid="counterexample"][data-policy="start-end"]').first()
  await cx.getByTestId('open-trace').click()
  await cx.getByTestId('open-trace-right').click()
  const left = lab.tracePane('left')
  const right = lab.tracePane('right')
  // n writes, munmap's 7 steps and the device's 2.
  await expect(left).toHaveAttribute('data-rows', String(n + 9))
  // Opening selects the violating step near the end; only a window of rows is in the DOM.
  await expect(left.locator('[data-testid="trace-row"][data-violation]')).toBeVisible()
  expect(await left.getByTestId('trace-row').count()).toBeLessThan(150)

  const ls = left.getByTestId('trace-scroller')
  for (const top of [0, 50_000, 100_000, 150_000, 20_000]) {
    await ls.evaluate((el, y) => {
      el.scrollTop = y
    }, top)
    await expect(
      left.locator(`[data-testid="trace-row"][data-step="${Math.floor(top / 20) + 3}"]`),
    ).toBeVisible()
  }
  await expect.poll(() => right.getByTestId('trace-scroller').evaluate((el) => el.scrollTop)).toBe(20_000)
  await left.locator('[data-testid="trace-row"][data-step="1004"]').click()
  await expect(lab.inspector.getByTestId('inspector-step')).toContainText('1004')
  await page.keyboard.press('ArrowDown')
  await expect(lab.inspector.getByTestId('inspector-step')).toContainText('1005')
  await lab.screenshot('08-long-trace')
})

test('dark theme renders the workbench', async ({ page, lab }) => {
  await lab.openScenario(UPGRADE)
  await lab.run()
  await page.locator('[data-testid="counterexample"]').first().getByTestId('open-trace').click()
  const toggle = page.getByTestId('theme-toggle')
  for (let i = 0; i < 3 && (await page.locator('html').getAttribute('data-theme')) !== 'dark'; i++)
    await toggle.click()
  await expect(page.locator('html')).toHaveAttribute('data-theme', 'dark')
  await lab.screenshot('07-dark')
})
