/**
 * The scenario editor's op assistance (issue 12): op names complete inside `[ ]`, hovering an op
 * shows that op's doc only, and a validation message's "did you mean" is offered as the Quick
 * Fix (and no Quick Fix where the message has none). Screenshots go to test-results/screenshots/.
 */
import { expect, test, type Page } from '@playwright/test'
import { LabPage } from './labPage'

const UPGRADE = 'upgrade-loop.smmu-no-btm.yaml'

let lab: LabPage

test.beforeEach(async ({ page }) => {
  lab = new LabPage(page)
  await lab.open()
  await lab.openScenario(UPGRADE)
  // Line 9 is `  C0: [write_fault P]`, line 11 `  D0: { via: smmu, ops: [write P 7] }`.
  await expect.poll(() => lab.editorText()).toContain('C0: [write_fault P]')
})

test.afterEach(() => {
  lab.expectNoErrors()
})

/** Puts the cursor on `line` (1-based) after the first `needle`, plus `offset` characters. */
async function cursorAt(page: Page, line: number, needle: string, offset = 0): Promise<void> {
  const text = (await lab.editorText()).split('\n')[line - 1] ?? ''
  const i = text.indexOf(needle)
  expect(i, `'${needle}' on line ${line}: ${text}`).toBeGreaterThanOrEqual(0)
  const kb = page.keyboard
  // Close a suggest or hover widget first: it could cover the spot the click lands on.
  await kb.press('Escape')
  await page.locator('[data-testid="editor"] .view-lines').click()
  await kb.press('ControlOrMeta+Home')
  for (let k = 1; k < line; k++) await kb.press('ArrowDown')
  await kb.press('Home')
  // Home goes to the first non-blank character; the line starts with two spaces.
  const lead = text.length - text.trimStart().length
  for (let k = lead; k < i + offset; k++) await kb.press('ArrowRight')
}

function suggestions(page: Page) {
  return page.locator('[data-testid="editor"] .suggest-widget .monaco-list-row')
}

test('op names complete inside [ ], filtered by what was typed', async ({ page }) => {
  const suggest = page.locator('[data-testid="editor"] .suggest-widget')
  // An empty slot after the comma: every CPU op.
  await lab.replaceLine(9, 'C0: [write_fault P, ')
  await cursorAt(page, 9, ', ', 2)
  await page.keyboard.press('Control+Space')
  await expect(suggest).toBeVisible()
  await expect(suggestions(page).filter({ hasText: /^munmap/ })).toHaveCount(1)
  await expect(suggestions(page).filter({ hasText: /^cow_fault/ })).toHaveCount(1)
  await lab.screenshot('editor-01-op-completion')
  await page.keyboard.press('Escape')

  // A half-typed name inside a device's ops: [ ]: device ops only, the prefix first; Enter takes it.
  await lab.replaceLine(9, 'C0: [write_fault P]')
  await lab.replaceLine(11, 'D0: { via: smmu, ops: [write P 7, re] }')
  await cursorAt(page, 11, ', re', 4)
  await page.keyboard.press('Control+Space')
  await expect(suggest).toBeVisible()
  await expect(suggestions(page).first()).toContainText('read')
  await expect(suggestions(page).filter({ hasText: /^write_fault/ })).toHaveCount(0)
  await page.keyboard.press('Enter')
  await expect.poll(() => lab.editorText()).toContain('ops: [write P 7, read] }')
})

test('hovering an op shows the doc of that op only', async ({ page }) => {
  await lab.replaceLine(9, 'C0: [write_fault P, munmap P]')
  const hover = page.locator('[data-testid="editor"] .monaco-hover:not(.hidden)')
  await cursorAt(page, 9, 'write_fault', 3)
  await page.keyboard.press('ControlOrMeta+K')
  await page.keyboard.press('ControlOrMeta+I')
  await expect(hover).toContainText('handle_mm_fault(FAULT_FLAG_WRITE)')
  await expect(hover).not.toContainText('munmap')
  await expect(hover).not.toContainText('madvise')
  // Nothing else stacked over it (monaco-yaml's schema title once headed every hover).
  await expect(hover).not.toContainText('MMU Notifier Lab scenario')
  await lab.screenshot('editor-02-op-hover')
  await page.keyboard.press('Escape')

  await cursorAt(page, 9, 'munmap', 2)
  await page.keyboard.press('ControlOrMeta+K')
  await page.keyboard.press('ControlOrMeta+I')
  await expect(hover).toContainText('unmap_region')
  await expect(hover).not.toContainText('handle_mm_fault')
})

test('an unknown op gets the "did you mean" Quick Fix that replaces it; none without a suggestion', async ({
  page,
}) => {
  lab.allow(/400|Bad Request/)
  await lab.replaceLine(9, 'C0: [write_falt P, read P -> r0]')
  await expect(page.getByTestId('issue').first()).toContainText("did you mean 'write_fault'")
  await expect.poll(() => lab.squiggleLines()).toEqual([9])
  const hover = page.locator('[data-testid="editor"] .monaco-hover:not(.hidden)')
  // The problem's hover offers the fix...
  await cursorAt(page, 9, 'write_falt', 2)
  await page.keyboard.press('ControlOrMeta+K')
  await page.keyboard.press('ControlOrMeta+I')
  await expect(hover).toContainText("unknown cpu op 'write_falt'")
  await expect(hover).toContainText('Quick Fix')
  await page.keyboard.press('Escape')
  // ...and Ctrl+. lists it.
  await page.keyboard.press('ControlOrMeta+.')
  const fix = page.locator('.action-widget').getByText("Change to 'write_fault'")
  await expect(fix).toBeVisible()
  await lab.screenshot('editor-03-quick-fix')
  await page.keyboard.press('Enter')
  await expect.poll(() => lab.editorText()).toContain('C0: [write_fault P, read P -> r0]')
  await expect(page.getByTestId('issues')).toContainText('no problems')

  // An op too far from any name: the message has no suggestion, so no fix is offered.
  await lab.replaceLine(9, 'C0: [frobnicate P]')
  await expect(page.getByTestId('issue').first()).toContainText('frobnicate')
  await expect(page.getByTestId('issue').first()).not.toContainText('did you mean')
  await cursorAt(page, 9, 'frobnicate', 2)
  await page.keyboard.press('ControlOrMeta+K')
  await page.keyboard.press('ControlOrMeta+I')
  await expect(hover).toContainText("unknown cpu op 'frobnicate'")
  await expect(hover).toContainText('No quick fixes available')
  // One problem, the engine's: no schema pattern restating the op list as a regex.
  await expect(hover).not.toContainText('does not match the pattern')
  await lab.screenshot('editor-04-no-quick-fix')
  await page.keyboard.press('Escape')
  await page.keyboard.press('ControlOrMeta+.')
  await expect(page.getByTestId('editor').getByText('No code actions available')).toBeVisible()
  await expect(page.getByText(/Change to '/)).toHaveCount(0)
})
