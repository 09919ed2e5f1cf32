/**
 * `mnlab notebook ...`:
 *   check FILE|DIR...                  recompute every experiment and synthesis; exit 1 if the
 *                                      reference result's (latest pinned, else latest) verdicts, or
 *                                      a synthesis's minimal placements or shown verdicts, changed
 *   record FILE... [--pin] [--stale]   run every experiment (or only those whose reference
 *                                      result is stale or missing) and append the results
 *   export FILE --format md|html [-o OUT]
 * Exit codes as for the rest of mnlab: 0 ok, 1 a changed verdict, 2 invalid input (file:line:col).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs'
import path from 'node:path'
import type { ExperimentCell, Notebook, SynthesisCell } from '../../api/notebook'
import { referenceIndex } from '../../api/record'
import { count, ENGINE_VERSION, type Scenario } from '../../engine'
import { loadScenarioText, ScenarioLoadError } from '../scenarioFiles'
import type { WorkerPool } from '../workerPool'
import { cellScenarioText, runRecipeInPool, verdictChanges, withNotebookPolicies } from './cells'
import { exportNotebook } from './export'
import {
  formatNotebookIssue,
  parseNotebook,
  recordResult,
  referenceResult,
  resultStatus,
  serializeNotebook,
} from './format'
import { ReadOnlyFileError, writeFileAtomic } from '../atomicFile'
import {
  addedScenarios,
  recordSynthesis,
  runSynthesisCell,
  synthesisCellFiles,
  synthesisCellRecipe,
  synthesisCellTexts,
  synthesisChanges,
  synthesisRecipeHash,
  synthesisSummary,
  type CellScenarioText,
} from './synthesis'

export class NotebookUsageError extends Error {}

/** A notebook that does not load: its issues, already printed as file:line:col. */
class NotebookInvalid extends Error {}

export const NOTEBOOK_SUFFIX = '.mnlab.yaml'

/** Files and directories (recursively) to notebook files, sorted. */
export function expandNotebookPaths(paths: readonly string[]): string[] {
  const out: string[] = []
  const walk = (p: string, top: boolean): void => {
    let st
    try {
      st = statSync(p)
    } catch {
      throw new NotebookInvalid(`${p}:1:1: no such file or directory`)
    }
    if (st.isDirectory()) {
      for (const e of readdirSync(p).sort()) if (!e.startsWith('.')) walk(path.join(p, e), false)
    } else if (top || p.endsWith(NOTEBOOK_SUFFIX)) out.push(p)
  }
  for (const p of paths) walk(p, true)
  return out
}

interface Loaded {
  readonly file: string
  readonly text: string
  readonly nb: Notebook
  readonly inlineLines: ReadonlyMap<string, number | null>
}

function loadNotebook(file: string): Loaded {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (e) {
    throw new NotebookInvalid(`${file}:1:1: cannot read: ${(e as Error).message}`)
  }
  const r = parseNotebook(text, file)
  if (!r.ok) throw new NotebookInvalid(r.issues.map(formatNotebookIssue).join('\n'))
  const inlineLines = new Map(r.notebook.cells.map((c, i) => [c.id, r.cellLines[i]!.inlineLine]))
  return { file, text, nb: r.notebook, inlineLines }
}

/** The cell's scenario, with errors in an inline scenario located in the notebook file. */
function cellScenario(l: Loaded, cell: ExperimentCell): { sc: Scenario; text: string } {
  let src: { text: string; file: string }
  try {
    src = cellScenarioText(cell, path.resolve(l.file))
  } catch (e) {
    throw new NotebookInvalid(`${l.file}:1:1: cell ${cell.id}: ${(e as Error).message}`)
  }
  let sc: Scenario
  try {
    sc = loadScenarioText(src.text, src.file)
  } catch (e) {
    if (!(e instanceof ScenarioLoadError)) throw e
    const base = l.inlineLines.get(cell.id)
    if (!('inline' in cell.scenario) || base === null || base === undefined) throw e
    const indent = /^( *)/.exec(l.text.split('\n')[base - 1] ?? '')![1]!.length
    throw new ScenarioLoadError(
      e.issues.map((i) => ({
        ...i,
        file: l.file,
        line: base + i.line - 1,
        column: i.column + indent,
        message: `cell ${cell.id}: ${i.message}`,
      })),
    )
  }
  try {
    return { sc: withNotebookPolicies(sc, l.nb.policies), text: src.text }
  } catch (e) {
    throw new NotebookInvalid(`${l.file}:1:1: cell ${cell.id}: policies: ${(e as Error).message}`)
  }
}

function takeOption(args: string[], names: readonly string[]): string | null {
  const i = args.findIndex((a) => names.includes(a) || names.some((n) => a.startsWith(n + '=')))
  if (i < 0) return null
  const a = args[i]!
  const eq = a.indexOf('=')
  if (eq >= 0) {
    args.splice(i, 1)
    return a.slice(eq + 1)
  }
  const v = args[i + 1]
  if (v === undefined) throw new NotebookUsageError(`${a} needs a value`)
  args.splice(i, 2)
  return v
}

/** A synthesis cell's scenarios and checked recipe; a problem is the notebook's (file:1:1). */
function synthesisCell(l: Loaded, cell: SynthesisCell) {
  let texts: CellScenarioText[]
  try {
    texts = synthesisCellTexts(cell, path.resolve(l.file))
  } catch (e) {
    throw new NotebookInvalid(`${l.file}:1:1: ${(e as Error).message}`)
  }
  const files = synthesisCellFiles(texts)
  const recipe = synthesisCellRecipe(cell, l.nb, files)
  if (typeof recipe === 'string') throw new NotebookInvalid(`${l.file}:1:1: ${recipe}`)
  return { texts, files, recipe }
}

/** `notebook check` of a notebook's synthesis cells: ok, new, or FAIL with what changed. */
async function checkSyntheses(
  l: Loaded,
  shown: string,
  pool: WorkerPool,
): Promise<{ total: number; bad: number }> {
  let total = 0
  let bad = 0
  for (const cell of l.nb.cells) {
    if (cell.kind !== 'synthesis') continue
    total++
    const { texts, files, recipe } = synthesisCell(l, cell)
    const fresh = recordSynthesis(await runSynthesisCell(pool, files, recipe), cell.recipe, texts)
    const ref = cell.results[referenceIndex(cell)] ?? null
    if (!ref) {
      process.stdout.write(`new  ${shown}#${cell.id}: nothing recorded; now ${synthesisSummary(fresh)}\n`)
      continue
    }
    const stale =
      ref.recipe_hash !== fresh.recipe_hash
        ? ' (recorded result is stale-recipe)'
        : ref.engine !== ENGINE_VERSION
          ? ' (recorded result is stale-engine)'
          : ''
    const changes = synthesisChanges(ref, fresh)
    const added = addedScenarios(ref, fresh)
    const more = added.length
      ? `; ${added.length} scenario${added.length === 1 ? '' : 's'} not recorded (added since)`
      : ''
    if (changes.length === 0) {
      process.stdout.write(`ok   ${shown}#${cell.id}: ${synthesisSummary(fresh)}${more}${stale}\n`)
      continue
    }
    bad++
    process.stdout.write(`FAIL ${shown}#${cell.id}: the synthesis changed since ${ref.at}${stale}\n`)
    for (const c of changes) process.stdout.write(`       ${c}\n`)
  }
  return { total, bad }
}

async function check(files: readonly string[], pool: WorkerPool): Promise<number> {
  const started = Date.now()
  const loaded = expandNotebookPaths(files.length ? files : ['notebooks']).map(loadNotebook)
  const jobs = loaded.map((l) =>
    l.nb.cells
      .filter((c): c is ExperimentCell => c.kind === 'experiment')
      .map((cell) => {
        const { sc, text } = cellScenario(l, cell)
        return { cell, text, run: runRecipeInPool(pool, sc, cell.recipe) }
      }),
  )
  let bad = 0
  let total = 0
  for (let i = 0; i < loaded.length; i++) {
    const l = loaded[i]!
    const shown = path.relative(process.cwd(), l.file) || l.file
    for (const job of jobs[i]!) {
      total++
      const run = await job.run
      const fresh = recordResult(run, job.cell.recipe, job.text, new Date(), false, l.nb.policies)
      const ref = referenceResult(job.cell)
      const verdicts = fresh.policies.map((p) => `${p.policy} ${p.verdict}`).join(', ')
      if (!ref) {
        process.stdout.write(`new  ${shown}#${job.cell.id}: nothing recorded; now ${verdicts}\n`)
        continue
      }
      const status = resultStatus(job.cell, job.text, ENGINE_VERSION, ref, l.nb.policies)
      const note = status === 'current' ? '' : ` (recorded result is ${status})`
      const changes = verdictChanges(ref, fresh)
      if (changes.length === 0) {
        process.stdout.write(`ok   ${shown}#${job.cell.id}: ${verdicts}${note}\n`)
        continue
      }
      bad++
      process.stdout.write(`FAIL ${shown}#${job.cell.id}: verdicts changed since ${ref.at}${note}\n`)
      for (const c of changes) process.stdout.write(`       ${c}\n`)
    }
    const syn = await checkSyntheses(l, shown, pool)
    total += syn.total
    bad += syn.bad
  }
  process.stdout.write(
    `${count(loaded.length, 'notebook')}, ${count(total, 'experiment')} in ${((Date.now() - started) / 1000).toFixed(1)} s on ${count(pool.size, 'worker')}\n`,
  )
  process.stdout.write(`${total - bad} unchanged, ${bad} changed\n`)
  return bad > 0 ? 1 : 0
}

async function record(
  files: readonly string[],
  pin: boolean,
  onlyStale: boolean,
  pool: WorkerPool,
): Promise<number> {
  if (files.length === 0)
    throw new NotebookUsageError('mnlab notebook record needs at least one notebook file')
  const loaded = expandNotebookPaths(files).map(loadNotebook)
  let conflicts = 0
  for (const l of loaded) {
    let n = 0
    const cells = await Promise.all(
      l.nb.cells.map(async (cell) => {
        if (cell.kind === 'synthesis') {
          const { texts, files, recipe } = synthesisCell(l, cell)
          const ref = cell.results[referenceIndex(cell)]
          if (
            onlyStale &&
            ref?.recipe_hash === synthesisRecipeHash(cell.recipe, texts) &&
            ref.engine === ENGINE_VERSION
          )
            return cell
          n++
          const r = await runSynthesisCell(pool, files, recipe)
          return {
            ...cell,
            results: [...cell.results, recordSynthesis(r, cell.recipe, texts, new Date(), pin)],
          }
        }
        if (cell.kind !== 'experiment') return cell
        const { sc, text } = cellScenario(l, cell)
        // --stale: leave a cell whose reference result still matches its recipe and this engine.
        if (onlyStale && resultStatus(cell, text, ENGINE_VERSION, undefined, l.nb.policies) === 'current')
          return cell
        n++
        const run = await runRecipeInPool(pool, sc, cell.recipe)
        const rec = recordResult(run, cell.recipe, text, new Date(), pin, l.nb.policies)
        return { ...cell, results: [...cell.results, rec] }
      }),
    )
    if (n === 0) {
      process.stdout.write(`recorded 0 experiments in ${l.file}\n`)
      continue
    }
    // The runs took a while: an edit saved meanwhile (in the workbench, an editor) wins, and
    // this run's results are not written over it.
    let now: string | null
    try {
      now = readFileSync(l.file, 'utf8')
    } catch {
      now = null
    }
    if (now !== l.text) {
      process.stderr.write(
        `mnlab: ${l.file} ${now === null ? 'was removed' : 'changed on disk'} while its experiments ran; nothing recorded in it (run record again)\n`,
      )
      conflicts++
      continue
    }
    await writeOrExplain(l.file, () => writeFileAtomic(l.file, serializeNotebook({ ...l.nb, cells })))
    process.stdout.write(`recorded ${n} experiment${n === 1 ? '' : 's'} in ${l.file}\n`)
  }
  return conflicts > 0 ? 1 : 0
}

/** A file that cannot be written: one line naming it and why, exit 1 (never a stack trace). */
export class NotebookWriteError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'NotebookWriteError'
  }
}

async function writeOrExplain(file: string, write: () => Promise<void> | void): Promise<void> {
  try {
    await write()
  } catch (e) {
    if (e instanceof ReadOnlyFileError) throw new NotebookWriteError(`mnlab: ${e.message}`)
    const code = (e as NodeJS.ErrnoException).code
    if (typeof code === 'string')
      throw new NotebookWriteError(
        `mnlab: cannot write ${file}: ${code} (${(e as Error).message.split(',')[0]})`,
      )
    throw e
  }
}

async function exportCmd(args: string[]): Promise<number> {
  const fmt = takeOption(args, ['--format'])
  const out = takeOption(args, ['-o', '--output'])
  if (args.length !== 1) throw new NotebookUsageError('mnlab notebook export takes one notebook file')
  if (fmt !== 'md' && fmt !== 'markdown' && fmt !== 'html')
    throw new NotebookUsageError(`--format must be md or html, got '${fmt ?? ''}'`)
  const l = loadNotebook(args[0]!)
  const text = exportNotebook(l.nb, fmt === 'html' ? 'html' : 'markdown')
  if (out) {
    await writeOrExplain(out, () => writeFileAtomic(out, text))
    process.stdout.write(
      `wrote ${out} (${fmt === 'html' ? 'HTML' : 'Markdown'}, ${Buffer.byteLength(text)} bytes)\n`,
    )
  } else process.stdout.write(text)
  return 0
}

export async function cmdNotebook(argv: readonly string[], pool: WorkerPool): Promise<number> {
  const [sub, ...rest] = argv
  const args = [...rest]
  try {
    switch (sub) {
      case 'check': {
        const unknown = args.find((a) => a.startsWith('-'))
        if (unknown) throw new NotebookUsageError(`unknown option ${unknown}`)
        return await check(args, pool)
      }
      case 'record': {
        const pin = args.includes('--pin')
        const onlyStale = args.includes('--stale')
        const files = args.filter((a) => a !== '--pin' && a !== '--stale')
        const unknown = files.find((a) => a.startsWith('-'))
        if (unknown) throw new NotebookUsageError(`unknown option ${unknown}`)
        return await record(files, pin, onlyStale, pool)
      }
      case 'export':
        return await exportCmd(args)
      default:
        throw new NotebookUsageError(
          `mnlab notebook: unknown subcommand '${sub ?? ''}' (check, record, export)`,
        )
    }
  } catch (e) {
    if (e instanceof NotebookInvalid) {
      process.stderr.write(e.message + '\n')
      return 2
    }
    if (e instanceof NotebookWriteError) {
      process.stderr.write(e.message + '\n')
      return 1
    }
    throw e
  }
}
