/**
 * The notebook view against the browser host (issue 4, first GUI slice): open an example notebook,
 * see its notes rendered and its recorded verdicts marked current; add a note, Save As, close and
 * reopen from Recent; a file changed on disk is not overwritten without asking; a broken file is
 * reported at its line and left alone. The host serves a fresh copy of notebooks/ (globalSetup.ts).
 */
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { expect, test } from '@playwright/test'
import { ROOT, startHost } from './host'
import { LabPage } from './labPage'

test.describe.configure({ mode: 'serial' })

let lab: LabPage

function notebooksDir(): string {
  const d = process.env.MNLAB_NOTEBOOKS
  if (!d) throw new Error('MNLAB_NOTEBOOKS is not set: run through playwright.config.ts')
  return d
}

test.beforeEach(async ({ page }) => {
  lab = new LabPage(page)
  await lab.open()
  await page.getByTestId('tab-notebook').click()
})

test.afterEach(() => {
  lab.expectNoErrors()
})

async function openByPath(page: import('@playwright/test').Page, file: string): Promise<void> {
  await page.getByTestId('nb-open').click()
  await page.getByTestId('nb-open-path').fill(file)
  await page.getByTestId('nb-open-submit').click()
}

test('open the 2023 notebook, add a note, save as, reopen from Recent', async ({ page }) => {
  await expect(page.getByTestId('notebook-view')).toContainText('No notebook is open')
  await openByPath(page, 'permission-upgrade-2023.mnlab.yaml')
  await expect(page.getByTestId('nb-title')).toHaveValue(/permission upgrades/)
  await expect(page.getByTestId('nb-note')).toHaveCount(5)
  await expect(page.getByTestId('nb-experiment')).toHaveCount(4)
  // The recorded verdicts were made by this engine from this recipe: current, not stale.
  const loop = page.locator('[data-testid="nb-experiment"][data-cell="the-loop"]')
  await expect(loop.getByTestId('nb-status')).toHaveAttribute('data-status', 'current')
  await expect(loop.locator('[data-testid="nb-verdict"][data-policy="start-end"]')).toHaveAttribute(
    'data-verdict',
    'violated',
  )
  await expect(page.getByTestId('nb-dirty')).toHaveCount(0)
  await lab.screenshot('20-notebook')

  // A note: Markdown is rendered, HTML in it is shown as text, never run.
  await page.getByTestId('nb-add-note').click()
  await page.getByTestId('nb-note-editor').fill('## Mine\n\n**bold** and `code` <img src=x onerror=alert(1)>')
  await page.getByTestId('nb-note-done').click()
  const mine = page.getByTestId('nb-note').last()
  await expect(mine.locator('h3')).toHaveText('Mine')
  await expect(mine.locator('strong')).toHaveText('bold')
  await expect(mine.locator('img')).toHaveCount(0)
  await expect(mine).toContainText('<img src=x onerror=alert(1)>')
  await expect(page.getByTestId('nb-dirty')).toBeVisible()
  await expect(page).toHaveTitle(/^● Notify on PTE permission upgrades/)

  await page.getByTestId('nb-save-as').click()
  await page.getByTestId('nb-save-as-path').fill('e2e-copy')
  await page.getByTestId('nb-save-as-submit').click()
  await expect(page.getByTestId('nb-file')).toHaveText('e2e-copy.mnlab.yaml')
  await expect(page.getByTestId('nb-dirty')).toHaveCount(0)
  const onDisk = readFileSync(path.join(notebooksDir(), 'e2e-copy.mnlab.yaml'), 'utf8')
  expect(onDisk).toContain('## Mine')
  // The original is untouched.
  expect(readFileSync(path.join(notebooksDir(), 'permission-upgrade-2023.mnlab.yaml'), 'utf8')).not.toContain(
    '## Mine',
  )

  // Run a cell: its recipe runs in the services and the result is appended, current, unsaved.
  const runs = loop.getByTestId('nb-status')
  await expect(runs).toContainText('1 run recorded')
  await loop.getByTestId('nb-run-cell').click()
  await expect(runs).toContainText('2 runs recorded', { timeout: 60_000 })
  await expect(runs).toHaveAttribute('data-status', 'current')
  await expect(page.getByTestId('nb-dirty')).toBeVisible()
  await expect(loop.getByTestId('nb-run-error')).toHaveCount(0)
  await page.getByTestId('nb-save').click()
  await expect(page.getByTestId('nb-dirty')).toHaveCount(0)
  expect(
    readFileSync(path.join(notebooksDir(), 'e2e-copy.mnlab.yaml'), 'utf8').match(/recipe_hash:/g)?.length,
  ).toBe(onDisk.match(/recipe_hash:/g)!.length + 1)

  // Two runs of one recipe, compared side by side: same verdicts; then pin the new one.
  await loop.getByTestId('nb-runs').locator('summary').click()
  await loop.getByTestId('nb-pick').nth(0).check()
  await loop.getByTestId('nb-pick').nth(1).check()
  const compare = loop.getByTestId('nb-compare')
  await expect(compare.getByTestId('nb-compare-row')).toHaveCount(3)
  await expect(compare.locator('[data-testid="nb-compare-row"][data-changed="true"]')).toHaveCount(0)
  await expect(compare.locator('[data-policy="start-end"]')).toContainText('violated')
  await loop.getByTestId('nb-pin').nth(1).click()
  await expect(loop.getByTestId('nb-pin').nth(1)).toHaveAttribute('aria-pressed', 'true')
  await expect(page.getByTestId('nb-dirty')).toBeVisible()
  await page.getByTestId('nb-save').click()
  await expect(page.getByTestId('nb-dirty')).toHaveCount(0)
  await lab.screenshot('21-notebook-compare')

  // Export: a self-contained HTML report with the notes and the verdicts, downloaded as a file.
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByTestId('nb-export-html').click(),
  ])
  expect(download.suggestedFilename()).toBe('e2e-copy.html')
  const html = readFileSync((await download.path())!, 'utf8')
  expect(html).toContain('<h3>Mine</h3>')
  expect(html).toContain('The loop: an SMMU without BTM')
  expect(html).not.toMatch(/<script/i)

  await page.getByTestId('nb-close').click()
  await expect(page.getByTestId('notebook-view')).toContainText('No notebook is open')
  const recent = page.getByTestId('nb-recent')
  const value = await recent.locator('option', { hasText: 'e2e-copy.mnlab.yaml' }).getAttribute('value')
  await recent.selectOption(value ?? '')
  await expect(page.getByTestId('nb-note')).toHaveCount(6)
  await expect(page.getByTestId('nb-note').last().locator('h3')).toHaveText('Mine')
  await expect(
    page.locator('[data-testid="nb-experiment"][data-cell="the-loop"]').getByTestId('nb-status'),
  ).toHaveAttribute('data-status', 'current')
})

test('a new notebook: a note and two experiments, run, saved, reopened after a reload', async ({ page }) => {
  await page.getByTestId('nb-new').click()
  await page.getByTestId('nb-title').fill('Upgrade loop, two ways')
  await page.getByTestId('nb-add-note').click()
  await page.getByTestId('nb-note-editor').fill('Does the arch hook fix the loop?')
  await page.getByTestId('nb-note-done').click()

  // Experiments come from the Scenario tab's text and the selected policies.
  await page.getByTestId('tab-scenario').click()
  await lab.openScenario('upgrade-loop.smmu-no-btm.yaml')
  await lab.selectPolicies(['start-end', 'arch-hook'])
  await page.getByTestId('tab-notebook').click()
  await page.getByTestId('nb-add-experiment').click()
  await page.getByTestId('tab-scenario').click()
  await lab.selectPolicies(['invalidate-range'])
  await page.getByTestId('tab-notebook').click()
  await page.getByTestId('nb-add-experiment').click()
  const exps = page.getByTestId('nb-experiment')
  await expect(exps).toHaveCount(2)
  await expect(exps.nth(0)).toContainText('RO->RW upgrade in place')
  for (const i of [0, 1]) {
    await exps.nth(i).getByTestId('nb-run-cell').click()
    await expect(exps.nth(i).getByTestId('nb-status')).toHaveAttribute('data-status', 'current', {
      timeout: 60_000,
    })
  }
  await expect(exps.nth(0).locator('[data-testid="nb-verdict"][data-policy="start-end"]')).toHaveAttribute(
    'data-verdict',
    'violated',
  )
  await expect(exps.nth(0).locator('[data-testid="nb-verdict"][data-policy="arch-hook"]')).toHaveAttribute(
    'data-verdict',
    'holds',
  )
  await expect(
    exps.nth(1).locator('[data-testid="nb-verdict"][data-policy="invalidate-range"]'),
  ).toHaveAttribute('data-verdict', 'violated')
  await page.getByTestId('nb-save').click()
  await page.getByTestId('nb-save-as-path').fill('e2e-new')
  await page.getByTestId('nb-save-as-submit').click()
  await expect(page.getByTestId('nb-dirty')).toHaveCount(0)

  await page.reload()
  await page.getByTestId('tab-notebook').click()
  const recent = page.getByTestId('nb-recent')
  const value = await recent.locator('option', { hasText: 'e2e-new.mnlab.yaml' }).getAttribute('value')
  await recent.selectOption(value ?? '')
  await expect(page.getByTestId('nb-title')).toHaveValue('Upgrade loop, two ways')
  await expect(page.getByTestId('nb-note')).toContainText('Does the arch hook fix the loop?')
  await expect(exps).toHaveCount(2)
  for (const i of [0, 1])
    await expect(exps.nth(i).getByTestId('nb-status')).toHaveAttribute('data-status', 'current')
})

test('a notebook changed on disk is not overwritten without asking', async ({ page }) => {
  await openByPath(page, 'e2e-copy.mnlab.yaml')
  const file = path.join(notebooksDir(), 'e2e-copy.mnlab.yaml')
  const theirs = readFileSync(file, 'utf8').replace(/^title: .*$/m, 'title: Changed by someone else')
  writeFileSync(file, theirs)

  await page.getByTestId('nb-title').fill('My title')
  await expect(page.getByTestId('nb-dirty')).toBeVisible()
  lab.allow(/HTTP 4\d\d|status of 4\d\d/)
  await page.getByTestId('nb-save').click()
  await expect(page.getByTestId('nb-conflict')).toContainText('changed on disk')
  expect(readFileSync(file, 'utf8')).toBe(theirs)
  await expect(page.getByTestId('nb-dirty')).toBeVisible()

  await page.getByTestId('nb-overwrite').click()
  await expect(page.getByTestId('nb-conflict')).toHaveCount(0)
  await expect(page.getByTestId('nb-dirty')).toHaveCount(0)
  expect(readFileSync(file, 'utf8')).toContain('title: My title')
})

test('editing the scenario of an experiment marks its recorded result stale', async ({ page }) => {
  // The cow notebook's first experiment runs a scenario file by path; change that file.
  const nbText = readFileSync(path.join(notebooksDir(), 'cow-ordering-2017.mnlab.yaml'), 'utf8')
  const rel = /path: (\.\.\/scenarios\/\S+)/.exec(nbText)![1]!
  const scenarioFile = path.join(notebooksDir(), rel)
  const before = readFileSync(scenarioFile, 'utf8')
  try {
    writeFileSync(
      scenarioFile,
      `${before}\n# edited by the e2e: any change to the text changes the recipe hash\n`,
    )
    await openByPath(page, 'cow-ordering-2017.mnlab.yaml')
    const uses = page.locator('[data-testid="nb-experiment"]').filter({ hasText: rel })
    await expect(uses.first().getByTestId('nb-status')).toHaveAttribute('data-status', 'stale-recipe')
    await expect(uses.first().getByTestId('nb-status')).toContainText('stale')
  } finally {
    writeFileSync(scenarioFile, before)
  }
  await page.getByTestId('nb-close').click()
  await openByPath(page, 'cow-ordering-2017.mnlab.yaml')
  const again = page.locator('[data-testid="nb-experiment"]').filter({ hasText: rel })
  await expect(again.first().getByTestId('nb-status')).toHaveAttribute('data-status', 'current')
})

test('editing a cell: recipe edits go stale and back, bad input is refused, the edited recipe runs', async ({
  page,
}) => {
  await openByPath(page, 'permission-upgrade-2023.mnlab.yaml')
  const loop = page.locator('[data-testid="nb-experiment"][data-cell="the-loop"]')
  const status = loop.getByTestId('nb-status')
  await expect(status).toHaveAttribute('data-status', 'current')

  // Another seed: the recipe no longer matches the recorded result.
  await loop.getByTestId('nb-edit-cell').click()
  const editor = loop.getByTestId('nb-cell-editor')
  await expect(editor.getByTestId('nb-edit-seed')).toHaveValue('1')
  await editor.getByTestId('nb-edit-seed').fill('7')
  await editor.getByTestId('nb-edit-apply').click()
  await expect(editor).toHaveCount(0)
  await expect(status).toHaveAttribute('data-status', 'stale-recipe')
  await expect(page.getByTestId('nb-dirty')).toHaveCount(1)
  await expect(loop).toContainText('seed 7')

  // Back to seed 1: the same recipe hash, current again.
  await loop.getByTestId('nb-edit-cell').click()
  await editor.getByTestId('nb-edit-seed').fill('1')
  await editor.getByTestId('nb-edit-apply').click()
  await expect(status).toHaveAttribute('data-status', 'current')

  // Bad input is refused at its field and changes nothing.
  await loop.getByTestId('nb-edit-cell').click()
  await editor.getByTestId('nb-edit-policies').fill('start-end, bogus')
  await editor.getByTestId('nb-edit-apply').click()
  await expect(editor.getByTestId('nb-edit-problems')).toContainText("unknown preset 'bogus'")
  await expect(editor.getByTestId('nb-edit-policies')).toHaveAttribute('aria-invalid', 'true')
  // An inline scenario that does not parse: refused with its line and column.
  await editor.getByTestId('nb-edit-policies').fill('start-end, arch-hook')
  await editor.getByTestId('nb-edit-inline-radio').check()
  await editor.getByTestId('nb-edit-inline').fill('title: x\npages: [oops\n')
  await editor.getByTestId('nb-edit-apply').click()
  await expect(editor.getByTestId('nb-edit-problems')).toContainText(/scenario: \d+:\d+: /)
  await lab.screenshot('24-notebook-cell-editor')
  await editor.getByTestId('nb-edit-cancel').click()
  await expect(loop).toContainText('upgrade-loop.smmu-no-btm.yaml · exhaustive · seed 1')
  await expect(status).toHaveAttribute('data-status', 'current')

  // Two policies, the scenario inlined from the file's text; run the edited recipe: a new current result.
  const text = readFileSync(path.join(ROOT, 'scenarios', 'upgrade-loop.smmu-no-btm.yaml'), 'utf8')
  await loop.getByTestId('nb-edit-cell').click()
  await editor.getByTestId('nb-edit-policies').fill('arch-hook, start-end')
  await editor.getByTestId('nb-edit-inline-radio').check()
  await editor.getByTestId('nb-edit-inline').fill(text)
  await editor.getByTestId('nb-edit-apply').click()
  await expect(editor).toHaveCount(0)
  // The scenario text is the same, but the policy list is not: stale.
  await expect(status).toHaveAttribute('data-status', 'stale-recipe')
  await expect(loop).toContainText('inline scenario')
  await loop.getByTestId('nb-run-cell').click()
  // The old result is pinned, so it stays the reference; the new run is listed, current.
  await expect(loop.getByTestId('nb-run')).toHaveCount(2, { timeout: 30_000 })
  await expect(status).toHaveAttribute('data-status', 'stale-recipe')
  await loop.getByTestId('nb-runs').locator('summary').click()
  const newRun = loop.locator('[data-testid="nb-run"][data-index="1"]')
  await expect(newRun.locator('[data-status]')).toHaveAttribute('data-status', 'current')
  // Pin it: the latest pinned run is the reference.
  await newRun.getByTestId('nb-pin').click()
  await expect(status).toHaveAttribute('data-status', 'current')
  await expect(loop.getByTestId('nb-verdict')).toHaveCount(2)
  await expect(loop.locator('[data-testid="nb-verdict"][data-policy="start-end"]')).toHaveAttribute(
    'data-verdict',
    'violated',
  )
  await expect(loop.locator('[data-testid="nb-verdict"][data-policy="arch-hook"]')).toHaveAttribute(
    'data-verdict',
    'holds',
  )
  // Saved and reopened: the edited recipe, and the new result still current.
  await page.getByTestId('nb-save-as').click()
  await page.getByTestId('nb-save-as-path').fill('edited-cell.mnlab.yaml')
  await page.getByTestId('nb-save-as-submit').click()
  await expect(page.getByTestId('nb-dirty')).toHaveCount(0)
  await page.getByTestId('nb-close').click()
  await openByPath(page, 'edited-cell.mnlab.yaml')
  await expect(status).toHaveAttribute('data-status', 'current')
  await expect(loop).toContainText('inline scenario')
  expect(readFileSync(path.join(notebooksDir(), 'edited-cell.mnlab.yaml'), 'utf8')).toContain(
    'policies: [arch-hook, start-end]',
  )
})

test('a broken notebook is reported at its line and left as it is', async ({ page }) => {
  const file = path.join(notebooksDir(), 'broken.mnlab.yaml')
  const text = 'format: 1\ntitle: Broken\ncells:\n  - kind: note\n    id: a\n    markdown: [unclosed\n'
  writeFileSync(file, text)
  lab.allow(/HTTP 4\d\d|status of 4\d\d/)
  await openByPath(page, 'broken.mnlab.yaml')
  await expect(page.getByTestId('nb-error')).toContainText('did not load')
  await expect(page.getByTestId('nb-issues')).toContainText(/broken\.mnlab\.yaml:\d+:\d+: /)
  await expect(page.getByTestId('notebook-view')).toContainText('No notebook is open')
  expect(readFileSync(file, 'utf8')).toBe(text)
})

test('unsaved edits survive a killed host and are offered back', async ({ page }) => {
  // A host of its own, with its own recovery area, so killing it leaves the shared host alone.
  const data = path.join(ROOT, 'test-results', 'e2e', 'data-crash')
  rmSync(data, { recursive: true, force: true })
  const scenarios = process.env.MNLAB_SCENARIOS!
  const first = await startHost(scenarios, data)
  // The page loses its host on purpose: its event stream and requests fail until it reloads.
  lab.allow(/ERR_CONNECTION_REFUSED|ERR_EMPTY_RESPONSE|Failed to load resource|EventSource/)
  try {
    await lab.open(first.url)
    await page.getByTestId('tab-notebook').click()
    await openByPath(page, 'cow-ordering-2017.mnlab.yaml')
    await page.getByTestId('nb-add-note').click()
    await page.getByTestId('nb-note-editor').fill('Unsaved before the kill')
    await page.getByTestId('nb-note-done').click()
    await expect(page.getByTestId('nb-dirty')).toBeVisible()
    const recovery = path.join(data, 'recovery')
    await expect
      .poll(
        () => (existsSync(recovery) ? readdirSync(recovery).filter((f) => f.endsWith('.json')).length : 0),
        {
          timeout: 15_000,
        },
      )
      .toBe(1)
  } finally {
    first.child.kill('SIGKILL')
  }

  const second = await startHost(scenarios, data)
  try {
    await page.goto(second.url)
    const offer = page.getByTestId('nb-recovery')
    await expect(offer).toContainText(/Recover unsaved changes to cow-ordering-2017\.mnlab\.yaml from \d/)
    await offer.getByTestId('nb-recover').click()
    await expect(page.getByTestId('nb-file')).toContainText('cow-ordering-2017.mnlab.yaml')
    await expect(page.getByTestId('nb-dirty')).toBeVisible()
    await expect(page.getByTestId('nb-note').last()).toContainText('Unsaved before the kill')
    // The file itself was never written.
    expect(readFileSync(path.join(notebooksDir(), 'cow-ordering-2017.mnlab.yaml'), 'utf8')).not.toContain(
      'Unsaved before the kill',
    )
    // Closing (and agreeing to lose the changes) removes the recovery copy.
    page.once('dialog', (d) => void d.accept())
    await page.getByTestId('nb-close').click()
    await expect
      .poll(() => readdirSync(path.join(data, 'recovery')).filter((f) => f.endsWith('.json')).length)
      .toBe(0)
  } finally {
    second.child.kill('SIGTERM')
  }
})

test("a recorded result keeps every invariant's verdict: an old one says 'not recorded', a new one that the others hold", async ({
  page,
}) => {
  test.setTimeout(120_000)
  await openByPath(page, 'permission-upgrade-2023.mnlab.yaml')
  // A copy of its own: this test saves, and the example stays as other tests expect it.
  await page.getByTestId('nb-save-as').click()
  await page.getByTestId('nb-save-as-path').fill('e2e-invariants')
  await page.getByTestId('nb-save-as-submit').click()
  await expect(page.getByTestId('nb-file')).toHaveText('e2e-invariants.mnlab.yaml')
  const loop = page.locator('[data-testid="nb-experiment"][data-cell="the-loop"]')
  const others = loop.locator('[data-testid="nb-verdict"][data-policy="start-end"] [data-testid="nb-others"]')
  // Recorded before per-invariant verdicts were kept: the file names only the violated one.
  await expect(others).toHaveText('not recorded')
  await expect(
    loop.locator('[data-testid="nb-verdict"][data-policy="arch-hook"] [data-testid="nb-others"]'),
  ).toHaveText('all hold')

  // Run it again and make the new run the reference: start-end violated progress, the others proven to hold.
  await loop.getByTestId('nb-run-cell').click()
  await expect(loop.getByTestId('nb-run')).toHaveCount(2, { timeout: 60_000 })
  await loop.getByTestId('nb-runs').locator('summary').click()
  await loop.locator('[data-testid="nb-run"][data-index="1"]').getByTestId('nb-pin').click()
  await expect(loop.locator('[data-testid="nb-verdict"][data-policy="start-end"]')).toHaveAttribute(
    'data-verdict',
    'violated',
  )
  await expect(others).toHaveText('all hold')
  await expect(others).toHaveAttribute('title', /forbid: holds/)
  await page.keyboard.press('ControlOrMeta+s')
  await expect(page.getByTestId('nb-dirty')).toHaveCount(0)
  const onDisk = readFileSync(path.join(notebooksDir(), 'e2e-invariants.mnlab.yaml'), 'utf8')
  expect(onDisk).toMatch(/invariants:\n\s+use-after-free: holds/)

  // The Markdown report says the same, and never 'unknown' for it.
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByTestId('nb-export-md').click(),
  ])
  const md = readFileSync((await download.path())!, 'utf8')
  const row = md.split('\n').find((l) => l.startsWith('| start-end | **violated** |'))
  expect(row).toBe(
    '| start-end | **violated** | holds | holds | holds | holds | violated | holds | violated | yes |',
  )
  await lab.screenshot('48-notebook-invariants')
})

test('synthesis cells: the recorded minimal placements and verdicts, current; running one records it again', async ({
  page,
}) => {
  await openByPath(page, 'placement-synthesis.mnlab.yaml')
  await expect(page.getByTestId('nb-synthesis')).toHaveCount(3)
  const glisse = page.locator('[data-testid="nb-synthesis"][data-cell="glisse-ptl"]')
  // The scenarios and recipe the result was recorded from are unchanged: current.
  await expect(glisse.getByTestId('nb-status')).toHaveAttribute('data-status', 'current')
  await expect(glisse.getByTestId('nb-minimal').locator(':scope > li')).toHaveCount(4)
  await expect(glisse.getByTestId('nb-minimal')).toContainText('needs tlb_flush_mmu_tlbonly')
  const loop = page.locator('[data-testid="nb-synthesis"][data-cell="upgrade-loop"]')
  const popple = loop.locator('[data-testid="nb-placement"][data-placement="start-end+upgrade-notify"]')
  await expect(popple).toContainText('1/5')
  await glisse.scrollIntoViewIfNeeded()
  await lab.screenshot('24-notebook-synthesis')

  // Run the upgrade-loop search again: its explorations run in the host's workers.
  await loop.getByTestId('nb-run-cell').click()
  await expect(loop.getByTestId('nb-running')).toBeVisible()
  await expect(loop.getByTestId('nb-running')).toHaveCount(0, { timeout: 120_000 })
  await expect(loop.getByTestId('nb-run-error')).toHaveCount(0)
  await expect(loop.getByTestId('nb-status')).toHaveAttribute('data-status', 'current')
  await expect(loop.getByTestId('nb-minimal').locator(':scope > li')).toHaveCount(3)
  await expect(page.getByTestId('nb-dirty')).toBeVisible()
})
