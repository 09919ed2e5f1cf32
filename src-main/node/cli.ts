/**
 * mnlab: the headless command line over the engine.
 *   mnlab run FILE... [--policy NAME|all|a,b] [--mode exhaustive|random|scripted] [--seed N]
 *                     [--executions N] [--schedule "C0 D0 ..."] [--max-states N] [--json]
 *   mnlab check PATH...            run each scenario under the policies in its expect; exit 1 on mismatch
 *   mnlab replay FILE --policy P --schedule "C0 D0 ..."   re-run a printed schedule with a full trace
 *   mnlab bench                    timings for the catalogue's key scenarios
 *   mnlab notebook check|record|export ...   lab notebooks (see notebook/cli.ts)
 * Exit codes: 0 ok, 1 mismatch (check), 2 unreadable or invalid input (error on stderr).
 */
import path from 'node:path'
import {
  defaultRunOptions,
  parsePolicyList,
  runExecution,
  runResultOf,
  ScheduleError,
  scheduleIndices,
  scriptedChooser,
  type ExploreMode,
  type Policy,
  type RunOptions,
  type RunResult,
  type Scenario,
} from '../engine'
import { formatExecution, formatRun } from './format'
import { expandScenarioPaths, loadScenarioFile, ScenarioLoadError } from './scenarioFiles'
import { toWorkerOptions, WorkerPool } from './workerPool'
import { runBench } from './bench'
import { cmdNotebook, NotebookUsageError } from './notebook/cli'

class UsageError extends Error {}

interface Flags {
  readonly positional: string[]
  readonly opts: Map<string, string | true>
}

const VALUED = new Set(['policy', 'mode', 'seed', 'executions', 'schedule', 'max-states', 'timeout'])
const BOOLEAN = new Set(['json', 'trace', 'help', 'por', 'bfs'])

function parseFlags(argv: readonly string[]): Flags {
  const positional: string[] = []
  const opts = new Map<string, string | true>()
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!
    if (a.startsWith('--')) {
      const [k, inline] = a.slice(2).split(/=(.*)/s, 2) as [string, string | undefined]
      if (VALUED.has(k)) {
        const v = inline ?? argv[++i]
        if (v === undefined) throw new UsageError(`--${k} needs a value`)
        opts.set(k, v)
      } else if (BOOLEAN.has(k)) opts.set(k, true)
      else throw new UsageError(`unknown option --${k}`)
    } else positional.push(a)
  }
  return { positional, opts }
}

function intFlag(f: Flags, k: string): number | null {
  const v = f.opts.get(k)
  if (v === undefined) return null
  if (typeof v !== 'string' || !/^\d+$/.test(v))
    throw new UsageError(`--${k} takes a non-negative integer, got '${String(v)}'`)
  return Number(v)
}

function policiesFor(sc: Scenario, f: Flags): Policy[] {
  const text = f.opts.get('policy')
  const spec =
    typeof text === 'string' ? text : sc.expect.length ? sc.expect.map(([n]) => n).join(',') : 'all'
  const ps = parsePolicyList(spec)
  if (typeof ps === 'string') throw new UsageError(ps)
  return ps
}

interface CliRun {
  readonly opts: RunOptions
  readonly timeoutMs: number | null
}

function optionsFor(sc: Scenario, f: Flags): CliRun {
  const base = defaultRunOptions(sc)
  const mode = f.opts.get('mode')
  if (mode !== undefined && !['exhaustive', 'random', 'scripted'].includes(mode as string)) {
    throw new UsageError(`--mode must be exhaustive, random or scripted, got '${String(mode)}'`)
  }
  const schedText = f.opts.get('schedule')
  const schedule = typeof schedText === 'string' ? schedText.split(/[\s,]+/).filter(Boolean) : base.schedule
  const m = (mode as ExploreMode | undefined) ?? (typeof schedText === 'string' ? 'scripted' : base.mode)
  if (m === 'scripted' && schedule.length === 0)
    throw new UsageError('scripted mode needs a schedule (--schedule "C0 D0 ..." or explore.schedule)')
  if (m === 'scripted') scheduleIndicesOrUsage(sc, schedule)
  const timeout = intFlag(f, 'timeout')
  return {
    opts: {
      ...base,
      mode: m,
      schedule,
      seed: intFlag(f, 'seed') ?? base.seed,
      executions: intFlag(f, 'executions') ?? base.executions,
      budget: {
        ...base.budget,
        maxStates: intFlag(f, 'max-states') ?? base.budget.maxStates,
        reduction: f.opts.has('por'),
        order: f.opts.has('bfs') ? 'bfs' : 'dfs',
      },
    },
    timeoutMs: timeout === null ? null : timeout * 1000,
  }
}

function scheduleIndicesOrUsage(sc: Scenario, names: readonly string[]): number[] {
  try {
    return scheduleIndices(sc, names)
  } catch (e) {
    throw new UsageError((e as Error).message)
  }
}

/** Runs every policy of a scenario in the worker pool; results come back in policy order. */
function runInPool(
  pool: WorkerPool,
  sc: Scenario,
  policies: readonly Policy[],
  run: CliRun,
): Promise<RunResult> {
  const wopts = toWorkerOptions(run.opts, run.timeoutMs)
  return Promise.all(policies.map((p) => pool.run(sc, p.name, wopts))).then((results) =>
    runResultOf(sc, run.opts, results),
  )
}

async function cmdRun(f: Flags, pool: WorkerPool): Promise<number> {
  if (f.positional.length === 0) throw new UsageError('mnlab run needs at least one scenario file')
  const files = expandScenarioPaths(f.positional)
  // Load and check everything first: invalid input is reported before any long run.
  const loaded = files.map((file) => {
    const sc = loadScenarioFile(file)
    return { file, sc, policies: policiesFor(sc, f), run: optionsFor(sc, f) }
  })
  const pending = loaded.map((l) => runInPool(pool, l.sc, l.policies, l.run))
  const runs: Array<{ file: string; run: RunResult }> = []
  for (let i = 0; i < loaded.length; i++) {
    const run = await pending[i]!
    runs.push({ file: loaded[i]!.file, run })
    if (!f.opts.has('json'))
      process.stdout.write((i > 0 ? '\n' : '') + formatRun(loaded[i]!.file, run) + '\n')
  }
  if (f.opts.has('json'))
    process.stdout.write(JSON.stringify(runs.length === 1 ? runs[0] : runs, null, 2) + '\n')
  return 0
}

async function cmdCheck(f: Flags, pool: WorkerPool): Promise<number> {
  const files = expandScenarioPaths(f.positional.length ? f.positional : ['scenarios'])
  const noPolicyFlag: Flags = { ...f, opts: new Map([...f.opts].filter(([k]) => k !== 'policy')) }
  const loaded = files.map((file) => {
    const sc = loadScenarioFile(file)
    return { file, sc, policies: policiesFor(sc, noPolicyFlag), run: optionsFor(sc, f) }
  })
  const started = Date.now()
  const pending = loaded.map((l) =>
    l.sc.expect.length === 0 ? null : runInPool(pool, l.sc, l.policies, l.run),
  )
  let bad = 0
  let total = 0
  for (let i = 0; i < loaded.length; i++) {
    const { file } = loaded[i]!
    const shown = path.relative(process.cwd(), file) || file
    const job = pending[i]
    if (!job) {
      process.stdout.write(`FAIL ${shown}: no expect block\n`)
      total++
      bad++
      continue
    }
    const run = await job
    for (const r of run.results) {
      total++
      const ok = r.matches === true
      if (!ok) bad++
      const violated =
        Object.entries(r.invariants)
          .filter(([, v]) => v === 'violated')
          .map(([k]) => k)
          .join(',') || 'none'
      const metricsBad = r.metricChecks.filter((m) => !m.ok)
      const why = ok
        ? ''
        : metricsBad.length > 0
          ? `  (metrics: ${metricsBad.map((m) => `${m.metric} is ${m.got}, expected ${m.want}`).join('; ')})`
          : `  (got ${r.verdict}${r.stats.cutReason ? `: ${r.stats.cutReason}` : ''}; violated: ${violated})`
      const metrics = r.metricChecks.length
        ? `; ${r.metricChecks.map((m) => `${m.metric} ${m.got}${m.ok ? '' : ` (expected ${m.want})`}`).join(', ')}`
        : ''
      process.stdout.write(
        `${ok ? 'ok  ' : 'FAIL'} ${shown} ${r.policy}: expect ${r.expected ?? '-'}, ${r.verdict}${metrics} [${r.stats.states} states]${why}\n`,
      )
    }
  }
  process.stdout.write(
    `${loaded.length} scenario files in ${((Date.now() - started) / 1000).toFixed(1)} s on ${pool.size} workers\n`,
  )
  process.stdout.write(`${total - bad} passed, ${bad} failed\n`)
  return bad > 0 ? 1 : 0
}

function cmdReplay(f: Flags): number {
  const [file] = f.positional
  if (!file || f.positional.length > 1) throw new UsageError('mnlab replay takes one scenario file')
  const sc = loadScenarioFile(file)
  const ps = policiesFor(sc, f)
  if (ps.length !== 1) throw new UsageError('mnlab replay needs exactly one --policy')
  const schedText = f.opts.get('schedule')
  const names =
    typeof schedText === 'string' ? schedText.split(/[\s,]+/).filter(Boolean) : (sc.explore.schedule ?? [])
  if (names.length === 0)
    throw new UsageError('mnlab replay needs --schedule "C0 D0 ..." (as printed by mnlab run)')
  let sched: number[]
  try {
    sched = scheduleIndices(sc, names)
  } catch (e) {
    throw new UsageError((e as Error).message)
  }
  try {
    const ex = runExecution(sc, ps[0]!, scriptedChooser(sched), {
      tracing: true,
      maxSteps: sched.length + 10_000,
    })
    process.stdout.write(
      `${file}: ${sc.title}\npolicy ${ps[0]!.name}, schedule of ${sched.length} steps, then the reference schedule\n`,
    )
    process.stdout.write(formatExecution(sc, ex) + '\n')
  } catch (e) {
    if (e instanceof ScheduleError) throw new UsageError(`schedule step ${e.index}: ${e.message}`)
    throw e
  }
  return 0
}

const HELP = `mnlab: MMU Notifier Lab, headless
  mnlab run FILE... [--policy NAME|all|a,b] [--mode exhaustive|random|scripted] [--seed N]
                    [--executions N] [--schedule "C0 D0 ..."] [--max-states N] [--timeout S] [--json]
                    [--bfs] (shortest counterexamples) [--por] (sleep-set reduction)
  mnlab check [PATH...]      run every scenario under the policies in its expect; exit 1 on a mismatch
  mnlab replay FILE --policy NAME --schedule "C0 D0 ..."   full trace of one schedule
  mnlab bench                engine timings on the key scenarios
  mnlab notebook check FILE|DIR...    recompute every experiment; exit 1 if a recorded verdict changed
  mnlab notebook record FILE... [--pin] [--stale]   run every experiment (--stale: only stale ones) and record the results
  mnlab notebook export FILE --format md|html [-o OUT]   a self-contained report
Policies: start-end, invalidate-range, arch-hook, each optionally +upgrade-notify, +access-flags-notify, +pri-flush, +kernel-notifier.
Exit codes: 0 ok, 1 expectation mismatch, 2 invalid input.
`

export async function main(argv: readonly string[], pool: WorkerPool = new WorkerPool()): Promise<number> {
  try {
    const [cmd, ...rest] = argv
    if (!cmd || cmd === 'help' || cmd === '--help' || cmd === '-h') {
      process.stdout.write(HELP)
      return 0
    }
    if (cmd === 'notebook') return await cmdNotebook(rest, pool)
    const f = parseFlags(rest)
    if (f.opts.has('help')) {
      process.stdout.write(HELP)
      return 0
    }
    switch (cmd) {
      case 'run':
        return await cmdRun(f, pool)
      case 'check':
        return await cmdCheck(f, pool)
      case 'replay':
        return cmdReplay(f)
      case 'bench':
        return await runBench(pool)
      default:
        throw new UsageError(`unknown command '${cmd}'`)
    }
  } catch (e) {
    if (e instanceof ScenarioLoadError) {
      process.stderr.write(e.message + '\n')
      return 2
    }
    if (e instanceof UsageError || e instanceof NotebookUsageError) {
      process.stderr.write(`mnlab: ${e.message}\n${HELP}`)
      return 2
    }
    throw e
  } finally {
    await pool.close()
  }
}

if (require.main === module || process.argv[1]?.endsWith('mnlab.cjs')) {
  void main(process.argv.slice(2)).then((code) => (process.exitCode = code))
}
