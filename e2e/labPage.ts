/**
 * Page object for the workbench in the browser host. Collects page errors and console errors
 * so every spec can assert the page stayed clean.
 */
import { test as base, expect, type Locator, type Page } from '@playwright/test'

/** The three notifier presets, as the specs run them. */
export const PRESETS = ['start-end', 'invalidate-range', 'arch-hook']
/** The COW-ordering scenario of the catalogue (start-end violates its forbid; the others hold). */
export const COW = 'cow-ordering.invalidate-range-needed.yaml'

export class LabPage {
  readonly errors: string[] = []

  constructor(readonly page: Page) {
    page.on('pageerror', (e) => this.errors.push(`pageerror: ${e.message}`))
    page.on('console', (m) => {
      if (m.type() === 'error') this.errors.push(`console: ${m.text()}`)
    })
  }

  /** The host's URL with its token (set by globalSetup). */
  static url(): string {
    const u = process.env.MNLAB_URL
    if (!u)
      throw new Error('MNLAB_URL is not set: run through playwright.config.ts (globalSetup starts the host)')
    return u
  }

  async open(url = LabPage.url()): Promise<void> {
    await this.page.goto(url)
    await expect(this.page.getByTestId('scenario-item').first()).toBeVisible()
    await expect(this.page.locator('[data-testid="editor"] .view-lines')).toBeVisible()
  }

  get runButton(): Locator {
    return this.page.getByTestId('run-button')
  }
  get cancelButton(): Locator {
    return this.page.getByTestId('cancel-button')
  }
  get progress(): Locator {
    return this.page.getByTestId('progress')
  }
  get matrix(): Locator {
    return this.page.getByTestId('verdict-matrix')
  }
  get inspector(): Locator {
    return this.page.getByTestId('step-inspector')
  }

  scenario(path: string): Locator {
    return this.page.locator(`[data-testid="scenario-item"][data-path="${path}"]`)
  }

  async openScenario(path: string): Promise<void> {
    await this.scenario(path).click()
    const prompt = this.page.getByTestId('discard-prompt')
    if (await prompt.isVisible()) await prompt.getByRole('button', { name: 'Discard' }).click()
    await expect(this.page.getByTestId('current-file')).toContainText(path)
  }

  /** Checks exactly these policies in the grid (and unchecks the rest). */
  async selectPolicies(policies: readonly string[]): Promise<void> {
    const field = this.page.getByTestId('policy-list')
    await field.fill(policies.join(', '))
    await field.press('Enter')
  }

  cell(policy: string, invariant: string): Locator {
    return this.page.locator(
      `[data-testid="verdict-cell"][data-policy="${policy}"][data-invariant="${invariant}"]`,
    )
  }

  overall(policy: string): Locator {
    return this.page.locator(`[data-testid="verdict-overall"][data-policy="${policy}"]`)
  }

  async run(timeout = 90_000): Promise<void> {
    await this.runButton.click()
    await expect(this.progress).toHaveAttribute('data-status', /finished|failed|cancelled/, { timeout })
  }

  /**
   * Replaces the text of one line (1-based), keeping its indentation. Monaco has no fill(), and
   * typing several lines would be re-indented by the editor, so specs edit line by line.
   */
  async replaceLine(line: number, text: string): Promise<void> {
    await this.page.locator('[data-testid="editor"] .view-lines').click()
    const kb = this.page.keyboard
    await kb.press('ControlOrMeta+Home')
    for (let i = 1; i < line; i++) await kb.press('ArrowDown')
    await kb.press('End')
    await kb.press('Shift+Home')
    await kb.insertText(text)
  }

  async editorText(): Promise<string> {
    const lines = await this.page.locator('[data-testid="editor"] .view-line').allTextContents()
    // Monaco renders spaces as no-break spaces.
    return lines.map((l) => l.replace(/\u00a0/g, ' ')).join('\n')
  }

  /** 1-based numbers of the visible editor lines that carry an error squiggle. */
  async squiggleLines(): Promise<number[]> {
    // Monaco renders one overlay div per visible line, in order; the document here fits on screen.
    const rows = this.page.locator('[data-testid="editor"] .view-overlays > div')
    const out: number[] = []
    const n = await rows.count()
    for (let i = 0; i < n; i++) {
      if ((await rows.nth(i).locator('.squiggly-error').count()) > 0) out.push(i + 1)
    }
    return out
  }

  /**
   * Opens `scenario`, runs `policies`, expects every one to match its `expect`, opens the first
   * counterexample of `policy` and selects its violating step. Returns the inspector's machine
   * state after that step.
   */
  async violatingState(scenario: string, policies: readonly string[], policy: string): Promise<Locator> {
    await this.openScenario(scenario)
    await this.selectPolicies(policies)
    await this.run()
    for (const p of policies) await expect(this.overall(p)).toHaveAttribute('data-match', 'true')
    await this.page
      .locator(`[data-testid="counterexample"][data-policy="${policy}"]`)
      .first()
      .getByTestId('open-trace')
      .click()
    await this.tracePane('left').locator('[data-testid="trace-row"][data-violation]').first().click()
    return this.inspector.getByTestId('inspector-state')
  }

  /** Opens `scenario`, runs `policies` and expects every one to match its `expect`. */
  async runMatching(scenario: string, policies: readonly string[], timeout = 150_000): Promise<void> {
    await this.openScenario(scenario)
    await this.selectPolicies(policies)
    await this.run(timeout)
    for (const p of policies) await expect(this.overall(p)).toHaveAttribute('data-match', 'true')
  }

  /** The first counterexample of `policy` in the results. */
  counterexample(policy: string): Locator {
    return this.page.locator(`[data-testid="counterexample"][data-policy="${policy}"]`).first()
  }

  /** A policy's row in a compare or distinguish. */
  outcome(policy: string): Locator {
    return this.page.locator(`[data-testid="compare-outcome"][data-policy="${policy}"]`)
  }

  tracePane(side: 'left' | 'right'): Locator {
    return this.page.locator(`[data-testid="trace-view"][data-side="${side}"]`)
  }

  async screenshot(name: string): Promise<void> {
    await this.page.screenshot({ path: `test-results/screenshots/${name}.png` })
  }

  private readonly allowed: RegExp[] = []

  /** Tolerates an expected error, e.g. the HTTP 400 the host returns for an invalid scenario. */
  allow(pattern: RegExp): void {
    this.allowed.push(pattern)
  }

  expectNoErrors(): void {
    const left = this.errors.filter((e) => !this.allowed.some((a) => a.test(e)))
    expect(left, left.join('\n')).toEqual([])
  }
}

/**
 * Playwright's `test` with a `lab` fixture: a LabPage opened on the host before the test, and
 * no unexpected page error after it (the specs' beforeEach/afterEach).
 */
export const test = base.extend<{ lab: LabPage }>({
  lab: async ({ page }, use) => {
    const lab = new LabPage(page)
    await lab.open()
    await use(lab)
    lab.expectNoErrors()
  },
})
