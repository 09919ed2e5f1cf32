/**
 * mnlab: the headless command line over the engine.
 *   mnlab run FILE... [--policy NAME|all|a,b] [--mode exhaustive|random|scripted] [--seed N]
 *                     [--executions N] [--schedule "C0 D0 ..."] [--max-states N] [--json]
 *   mnlab check PATH...            run each scenario under the policies in its expect; exit 1 on mismatch
 *   mnlab replay FILE --policy P --schedule "C0 D0 ..."   re-run a printed schedule with a full trace
 *   mnlab replay FILE --policy all|a,b --schedule "..."   the same schedule under each policy, compared
 *   mnlab distinguish FILE --policies a,b    the shortest schedule on which two policies' outcomes differ
 *   mnlab synthesize PATH... [--objective sim_ns|secondary_invalidations] [--sites a,b] [--jobs N]
 *                                  the cheapest notifier placements under which every scenario holds
 *   mnlab sites [--json]           the notification sites a policy is a set of, and the presets' sets
 *   mnlab bench                    timings for the catalogue's key scenarios
 *   mnlab notebook check|record|export ...   lab notebooks (see notebook/cli.ts)
 * Exit codes: 0 ok, 1 mismatch (check), 2 unreadable or invalid input (error on stderr),
 * 4 distinguish or synthesize stopped by a budget before it was done, 130 synthesize cancelled
 * (Ctrl+C).
 */
import { readFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {
  defaultRunOptions,
  ENGINE_VERSION,
  expectStatus,
  explainExecution,
  namedSites,
  notProvenReason,
  PRESETS,
  parsePolicyList,
  plural,
  runExecution,
  runResultOf,
  ScheduleError,
  SITE_NAMES,
  scriptedChooser,
  SITES,
  VARIANTS,
  type Counterexample,
  type ExpectStatus,
  type ExploreMode,
  type Policy,
  type PolicyResult,
  type RunOptions,
  type RunResult,
  type Scenario,
} from '../engine'
import { formatExecution, formatRun } from './format'
import { count, formatCompare, formatDistinguish } from './formatCompare'
import { LabApiError } from './apiErrors'
import {
  compareRuns,
  counterexampleHints,
  distinguishPolicies,
  distinguishRuns,
  threadIndices,
} from './engineTasks'
import { progressBoard, shouldShowProgress, type ProgressBoard } from './progress'
import {
  expandScenarioPaths,
  loadScenarioFile,
  ScenarioLoadError,
  scheduleStepIssue,
  unfollowableStep,
} from './scenarioFiles'
import { toWorkerOptions, WorkerPool, type WorkerRunOptions } from './workerPool'
import { runBench } from './bench'
import { formatSynthesis } from './formatSynthesis'
import { startSynthesis, synthSettings, type SynthScenarioFile } from './synthesis'
import { cmdNotebook, NotebookUsageError } from './notebook/cli'

/**
 * Bad command-line input: one line on stderr and a pointer to --help; only `usage` errors (an
 * unknown command) print the whole usage.
 */
class UsageError extends Error {
  constructor(
    message: string,
    readonly usage = false,
  ) {
    super(message)
  }
}

interface Flags {
  readonly positional: string[]
  readonly opts: Map<string, string | true>
}

const VALUED = new Set([
  'policy',
  'policies',
  'mode',
  'seed',
  'executions',
  'schedule',
  'max-states',
  'timeout',
  'reduction',
  'max-memory',
  'objective',
  'sites',
  'jobs',
])
const BOOLEAN = new Set(['json', 'trace', 'help', 'por', 'bfs', 'quick', 'first', 'full'])

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
  const ps = parsePolicyList(spec, sc.policies)
  if (typeof ps === 'string') throw new UsageError(ps)
  return ps
}

interface CliRun {
  readonly opts: RunOptions
  readonly timeoutMs: number | null
  /** --timeout bounds the whole command: every policy of every file stops by then. */
  readonly deadline: number | null
  /** --max-memory MB: each policy's memory budget (default: 85% of a worker's heap limit). */
  readonly maxMemoryMb: number | null
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
  const reduction = f.opts.get('reduction')
  if (reduction !== undefined && !REDUCTIONS.includes(reduction as string))
    throw new UsageError(`--reduction must be ${REDUCTIONS.join(', ')}, got '${String(reduction)}'`)
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
        canonicalFrames: reduction !== 'none',
        persistent:
          reduction === undefined ||
          reduction === 'components' ||
          reduction === 'persistent' ||
          reduction === 'merge',
        components: reduction === undefined || reduction === 'components',
        merge: reduction === 'merge',
      },
    },
    timeoutMs: timeout === null ? null : timeout * 1000,
    deadline: timeout === null ? null : commandStarted + timeout * 1000,
    maxMemoryMb: intFlag(f, 'max-memory'),
  }
}

function scheduleIndicesOrUsage(sc: Scenario, names: readonly string[]): number[] {
  try {
    return threadIndices(sc, names)
  } catch (e) {
    throw new UsageError((e as Error).message)
  }
}

/**
 * A scripted schedule must be followable under each policy (a thread may be finished or blocked
 * at a step under one policy and not another): one execution per policy, here, so a bad
 * schedule is a usage error (exit 2) naming its step, not a failed worker.
 */
function checkScriptedSchedule(
  file: string,
  sc: Scenario,
  policies: readonly Policy[],
  run: CliRun,
  fromFlag: boolean,
): void {
  if (run.opts.mode !== 'scripted') return
  const idx = scheduleIndicesOrUsage(sc, run.opts.schedule)
  const u = unfollowableStep(sc, policies, idx, run.opts.budget.maxSteps)
  if (u === null) return
  if (fromFlag) throw new UsageError(`--schedule step ${u.index} under ${u.policy}: ${u.message}`)
  // The file's own explore.schedule: a located error in the file, like any other.
  throw new ScenarioLoadError([scheduleStepIssue(readFileSync(file, 'utf8'), file, u)])
}

/** Runs every policy of a scenario in the worker pool; results come back in policy order. */
function runInPool(
  pool: WorkerPool,
  sc: Scenario,
  policies: readonly Policy[],
  run: CliRun,
  board: ProgressBoard,
  label: string,
  firstFor: (p: Policy) => WorkerRunOptions['first'] = () => undefined,
): Promise<RunResult> {
  const base = { ...toWorkerOptions(run.opts, run.timeoutMs, run.deadline), maxMemoryMb: run.maxMemoryMb }
  const random = run.opts.mode === 'random'
  return Promise.all(
    policies.map((p) => {
      const task = board.task(
        `${label}${p.name}`,
        random ? 'schedules' : 'states',
        random ? run.opts.executions : null,
      )
      const started = Date.now()
      return pool
        .start(sc, p, { ...base, first: firstFor(p) }, (pr) => {
          task.update(random ? pr.executions : pr.states)
          if (pr.first) task.note(`${pr.first.invariant} found, exploring on`)
        })
        .result.then((r) => {
          const n = random
            ? `${r.stats.executions} ${plural(r.stats.executions, 'schedule')}`
            : count(r.stats.states, 'state')
          task.done(`${r.verdict}, ${n}, ${((Date.now() - started) / 1000).toFixed(1)} s`)
          return r
        })
    }),
  ).then((results) => runResultOf(sc, run.opts, results))
}

async function cmdRun(f: Flags, pool: WorkerPool): Promise<number> {
  if (f.positional.length === 0) throw new UsageError('mnlab run needs at least one scenario file')
  const files = expandScenarioPaths(f.positional)
  // Load and check everything first: invalid input is reported before any long run.
  const loaded = files.map((file) => {
    const sc = loadScenarioFile(file)
    const l = { file, sc, policies: policiesFor(sc, f), run: optionsFor(sc, f) }
    checkScriptedSchedule(file, sc, l.policies, l.run, f.opts.has('schedule'))
    return l
  })
  const json = f.opts.has('json')
  const board = progressBoard({ enabled: shouldShowProgress(json) })
  try {
    const first = f.opts.has('first') ? 'any' : undefined
    const pending = loaded.map((l) =>
      runInPool(
        pool,
        l.sc,
        l.policies,
        l.run,
        board,
        loaded.length > 1 ? `${path.basename(l.file)} ` : '',
        () => first,
      ),
    )
    const runs: Array<{ file: string; run: RunResult }> = []
    for (let i = 0; i < loaded.length; i++) {
      const run = await pending[i]!
      runs.push({ file: loaded[i]!.file, run })
      if (!json) {
        if (i === loaded.length - 1) board.stop()
        const hints = runHints(loaded[i]!.sc, loaded[i]!.policies, run)
        process.stdout.write((i > 0 ? '\n' : '') + formatRun(loaded[i]!.file, run, hints) + '\n')
      }
    }
    if (json) process.stdout.write(JSON.stringify(runs.length === 1 ? runs[0] : runs, null, 2) + '\n')
  } finally {
    board.stop()
  }
  return 0
}

/**
 * The hook hints under a run's counterexamples: each counterexample's schedule replayed
 * leniently under every policy of the run that found no violation (engineTasks
 * counterexampleHints); nothing when every policy violates or none does.
 */
function runHints(
  sc: Scenario,
  policies: readonly Policy[],
  run: RunResult,
): (r: PolicyResult, c: Counterexample) => ReturnType<typeof counterexampleHints> {
  const holding = policies.filter((p) => {
    const r = run.results.find((x) => x.policy === p.name)
    return r !== undefined && r.verdict !== 'violated' && r.counterexamples.length === 0
  })
  return (r, c) => {
    const p = policies.find((x) => x.name === r.policy)
    return p ? counterexampleHints(sc, p, c, holding) : []
  }
}

/**
 * What `check` needs to see of a policy: an entry expecting a violation stops at the first one
 * (`violated`: any invariant; a named invariant: that one), since one real counterexample
 * settles it; an entry expecting `holds` explores everything. `--full` explores everything.
 */
function firstForExpect(sc: Scenario, p: Policy): WorkerRunOptions['first'] {
  const exp = sc.expect.find(([n]) => n === p.name)?.[1]
  // An exact set (`{ violated: [...] }`) needs every invariant settled: explore everything.
  if (exp === undefined || exp === 'holds' || typeof exp !== 'string') return undefined
  return exp === 'violated' ? 'any' : [exp]
}

/** One `check` line: ok, not proven (no violation, but no proof either) or FAIL, with why. */
function checkLine(shown: string, r: PolicyResult): { status: ExpectStatus; line: string } {
  const status = expectStatus(r) ?? 'mismatch'
  const violated =
    Object.entries(r.invariants)
      .filter(([, v]) => v === 'violated')
      .map(([k]) => k)
      .join(',') || 'none'
  const metricsBad = r.metricChecks.filter((m) => !m.ok)
  const why =
    status === 'ok'
      ? ''
      : status === 'not-proven'
        ? `  (${notProvenReason(r)})`
        : metricsBad.length > 0
          ? `  (metrics: ${metricsBad.map((m) => `${m.metric} is ${m.got}, expected ${m.want}`).join('; ')})`
          : r.expectNote !== undefined
            ? `  (${r.expectNote}; violated: ${violated})`
            : `  (got ${r.verdict}${r.stats.cutReason ? `: ${r.stats.cutReason}` : ''}; violated: ${violated})`
  const metrics = r.metricChecks.length
    ? `; ${r.metricChecks.map((m) => `${m.metric} ${m.got}${m.ok ? '' : ` (expected ${m.want})`}`).join(', ')}`
    : ''
  const tag = status === 'ok' ? 'ok  ' : status === 'not-proven' ? 'not proven' : 'FAIL'
  return {
    status,
    line: `${tag} ${shown} ${r.policy}: expect ${r.expected ?? '-'}, ${r.verdict}${metrics} [${r.stats.states} ${plural(r.stats.states, 'state')}]${why}`,
  }
}

async function cmdCheck(f: Flags, pool: WorkerPool): Promise<number> {
  const files = expandScenarioPaths(f.positional.length ? f.positional : ['scenarios'])
  const noPolicyFlag: Flags = { ...f, opts: new Map([...f.opts].filter(([k]) => k !== 'policy')) }
  const loaded = files.map((file) => {
    const sc = loadScenarioFile(file)
    const l = { file, sc, policies: policiesFor(sc, noPolicyFlag), run: optionsFor(sc, f) }
    checkScriptedSchedule(file, sc, l.policies, l.run, f.opts.has('schedule'))
    return l
  })
  const started = Date.now()
  const live = shouldShowProgress(false)
  const board = progressBoard({ enabled: live })
  const jobs = loaded.reduce((n, l) => n + (l.sc.expect.length ? l.policies.length : 0), 0)
  const overall = board.task('check', 'runs', jobs)
  let finished = 0
  const quiet = progressBoard({ enabled: false })
  const pending = loaded.map((l) =>
    l.sc.expect.length === 0
      ? null
      : runInPool(pool, l.sc, l.policies, l.run, quiet, '', (p) =>
          f.opts.has('full') ? undefined : firstForExpect(l.sc, p),
        ).then((r) => {
          finished += r.results.length
          overall.update(finished)
          return r
        }),
  )
  let bad = 0
  let notProven = 0
  let total = 0
  const lines: string[] = []
  // With progress on screen the lines are printed once it is cleared; in a log, as they come.
  const emit = (l: string): void => {
    if (live) lines.push(l)
    else process.stdout.write(l + '\n')
  }
  for (let i = 0; i < loaded.length; i++) {
    const { file } = loaded[i]!
    const shown = path.relative(process.cwd(), file) || file
    const job = pending[i]
    if (!job) {
      emit(`FAIL ${shown}: no expect block`)
      total++
      bad++
      continue
    }
    const run = await job
    for (const r of run.results) {
      total++
      const { status, line } = checkLine(shown, r)
      if (status === 'mismatch') bad++
      if (status === 'not-proven') notProven++
      emit(line)
    }
  }
  overall.done(`${total} ${plural(total, 'run')} in ${((Date.now() - started) / 1000).toFixed(1)} s`)
  board.stop()
  for (const l of lines) process.stdout.write(l + '\n')
  process.stdout.write(
    `${loaded.length} scenario ${plural(loaded.length, 'file')} in ${((Date.now() - started) / 1000).toFixed(1)} s on ${pool.size} ${plural(pool.size, 'worker')}\n`,
  )
  if (notProven > 0)
    process.stdout.write(
      `${notProven} expected to hold and not proven: no violation found, but the runs did not cover every interleaving\n`,
    )
  process.stdout.write(`${total - bad} passed, ${bad} failed\n`)
  return bad > 0 ? 1 : 0
}

/** Exit code of `distinguish` when its budget ran out first (documented in HELP and README). */
export const EXIT_BUDGET = 4

function cmdReplay(f: Flags): number {
  const [file] = f.positional
  if (!file || f.positional.length > 1) throw new UsageError('mnlab replay takes one scenario file')
  const sc = loadScenarioFile(file)
  if (!f.opts.has('policy') && sc.expect.length > 1)
    throw new UsageError(
      'mnlab replay needs --policy NAME (or --policy all|a,b to compare policies on the schedule)',
    )
  const ps = policiesFor(sc, f)
  const schedText = f.opts.get('schedule')
  const names =
    typeof schedText === 'string' ? schedText.split(/[\s,]+/).filter(Boolean) : (sc.explore.schedule ?? [])
  // Comparing on an empty schedule is the reference schedule under each policy: allowed when
  // asked for explicitly (a distinguishing schedule can be empty).
  if (names.length === 0 && (ps.length === 1 || typeof schedText !== 'string'))
    throw new UsageError('mnlab replay needs --schedule "C0 D0 ..." (as printed by mnlab run)')
  const sched = scheduleIndicesOrUsage(sc, names)
  if (ps.length > 1) {
    const { result, executions } = compareRuns(sc, ps, sched)
    process.stdout.write(
      f.opts.has('json')
        ? JSON.stringify({ file, ...result }, null, 2) + '\n'
        : formatCompare(sc, file, result, executions) + '\n',
    )
    return 0
  }
  try {
    const ex = runExecution(sc, ps[0]!, scriptedChooser(sched), {
      tracing: true,
      maxSteps: sched.length + 10_000,
    })
    process.stdout.write(
      `${file}: ${sc.title}\npolicy ${ps[0]!.name}, schedule of ${count(sched.length, 'step')}, then the reference schedule\n`,
    )
    process.stdout.write(formatExecution(sc, ex, explainExecution(sc, ps[0]!, ex)) + '\n')
    for (const note of scheduleNotes(
      names,
      ex.schedule.map((t) => sc.threads[t]!.name),
      ex.outcome,
    ))
      process.stdout.write(note + '\n')
  } catch (e) {
    if (e instanceof ScheduleError) throw new UsageError(`schedule step ${e.index}: ${e.message}`)
    throw e
  }
  return 0
}

/**
 * `mnlab distinguish FILE --policies a,b`: the shortest schedule on which the two policies'
 * outcomes differ (engine/compare.ts), each outcome on it, and the first step where their
 * traces differ. Exit 0 when found or proven that none exists, EXIT_BUDGET when the budget ran out.
 */
function cmdDistinguish(f: Flags): number {
  const [file] = f.positional
  if (!file || f.positional.length > 1) throw new UsageError('mnlab distinguish takes one scenario file')
  const spec = f.opts.get('policies') ?? f.opts.get('policy')
  if (typeof spec !== 'string') throw new UsageError('mnlab distinguish needs --policies A,B (two policies)')
  const twoNames = (): never => {
    throw new UsageError(`mnlab distinguish needs two policies, as --policies A,B; got '${spec}'`)
  }
  // Variants join with '+', so a comma separates two policies (or two sites of a sites: set).
  const parts = spec.split(',').map((x) => x.trim())
  if (parts.length < 2 || parts.some((x) => x === '' || x === 'all')) twoNames()
  const maxStates = intFlag(f, 'max-states')
  if (maxStates === 0) throw new UsageError('--max-states must be at least 1')
  const timeout = intFlag(f, 'timeout')
  const sc = loadScenarioFile(file)
  const ps = parsePolicyList(spec, sc.policies)
  if (typeof ps === 'string') throw new UsageError(ps)
  if (ps.length !== 2) twoNames()
  let pair: ReturnType<typeof distinguishPolicies>
  try {
    pair = distinguishPolicies([ps[0]!.name, ps[1]!.name], sc)
  } catch (e) {
    if (e instanceof LabApiError) throw new UsageError(e.message)
    throw e
  }
  const started = Date.now()
  const { result, executions } = distinguishRuns(sc, pair[0], pair[1], {
    maxStates: maxStates ?? undefined,
    timeoutMs: timeout === null ? undefined : Math.max(0, commandStarted + timeout * 1000 - started),
  })
  if (f.opts.has('json'))
    process.stdout.write(JSON.stringify({ file, elapsedMs: Date.now() - started, ...result }, null, 2) + '\n')
  else
    process.stdout.write(
      formatDistinguish(sc, file, result, executions, { traces: f.opts.has('trace') }) +
        `\n${count(result.states, 'state pair')} in ${((Date.now() - started) / 1000).toFixed(1)} s\n`,
    )
  return result.schedule !== null || result.complete ? 0 : EXIT_BUDGET
}

/** Exit code of a command cancelled with Ctrl+C (128 + SIGINT, as shells report it). */
export const EXIT_CANCELLED = 130

/**
 * `mnlab synthesize PATH...`: the minimal notifier placements (sets of call sites) under which
 * every scenario holds, the Pareto front of scenarios held against cost, a certificate per
 * site, the presets (and --policy placements) side by side, and what the search cost. Each
 * exploration is a job in the worker pool (--jobs N workers, default one per core). Exit 0
 * when complete, EXIT_BUDGET when a budget left something undecided, EXIT_CANCELLED on Ctrl+C.
 */
async function cmdSynthesize(f: Flags, pool: WorkerPool): Promise<number> {
  if (f.positional.length === 0)
    throw new UsageError('mnlab synthesize needs at least one scenario file or folder')
  const jobs = intFlag(f, 'jobs')
  if (jobs === 0) throw new UsageError('--jobs must be at least 1')
  const maxStates = intFlag(f, 'max-states')
  if (maxStates === 0) throw new UsageError('--max-states must be at least 1')
  const timeout = intFlag(f, 'timeout')
  const text = (k: string): string | null => {
    const v = f.opts.get(k)
    return typeof v === 'string' ? v : null
  }
  const sites = text('sites')
  const policy = text('policy')
  const files: SynthScenarioFile[] = expandScenarioPaths(f.positional).map((file) => ({
    id: file,
    file,
    scenario: loadScenarioFile(file),
  }))
  if (files.length === 0) throw new UsageError(`no scenario files (*.yaml) in ${f.positional.join(', ')}`)
  const recipe = synthSettings(
    {
      sites: sites === null ? null : sites.split(/[,+\s]+/).filter(Boolean),
      objective: text('objective'),
      policies: policy === null ? [] : [policy],
      maxStates,
      timeoutMs: timeout === null ? null : Math.max(1, commandStarted + timeout * 1000 - Date.now()),
    },
    files,
  )
  if (typeof recipe === 'string') throw new UsageError(recipe)
  // One worker per core unless --jobs says otherwise (main's pool stops at four).
  const cores = Math.max(1, os.availableParallelism?.() ?? os.cpus().length)
  const size = jobs ?? cores
  const workers = size === pool.size ? pool : new WorkerPool(undefined, size)
  const json = f.opts.has('json')
  const board = progressBoard({ enabled: shouldShowProgress(json) })
  const task = board.task('synthesize', 'explorations', null)
  const run = startSynthesis(workers, files, recipe, {
    onProgress: (p) => {
      task.update(p.explored)
      task.note(
        `${p.phase}: ${p.scenariosDone}/${p.scenarios} scenarios decided, ${p.costRuns} reference runs, ${p.pending} running`,
      )
    },
  })
  let cancelled = false
  const onSigint = (): void => {
    cancelled = true
    run.cancel()
  }
  process.once('SIGINT', onSigint)
  try {
    const r = await run.result
    task.done(`${r.search.explored} explorations, ${(r.search.elapsedMs / 1000).toFixed(1)} s`)
    board.stop()
    process.stdout.write(
      json ? JSON.stringify(r, null, 2) + '\n' : formatSynthesis(r, { workers: workers.size }) + '\n',
    )
    return r.complete ? 0 : EXIT_BUDGET
  } catch (e) {
    if (!cancelled) throw e
    board.stop()
    process.stderr.write('mnlab: synthesize cancelled\n')
    return EXIT_CANCELLED
  } finally {
    process.removeListener('SIGINT', onSigint)
    board.stop()
    if (workers !== pool) await workers.close()
  }
}

/**
 * What became of a scripted schedule: steps where strong fairness ran a starved thread instead
 * of the one asked for, and steps never used because the execution ended first.
 */
export function scheduleNotes(asked: readonly string[], ran: readonly string[], outcome: string): string[] {
  const notes: string[] = []
  const n = Math.min(asked.length, ran.length)
  const forced: string[] = []
  for (let i = 0; i < n; i++)
    if (asked[i] !== ran[i]) forced.push(`step ${i} ran ${ran[i]} instead of ${asked[i]}`)
  if (forced.length)
    notes.push(
      `note: the run left the schedule (strong fairness ran a starved thread): ${forced.slice(0, 5).join('; ')}${forced.length > 5 ? `; ${forced.length - 5} more` : ''}`,
    )
  if (ran.length < asked.length) {
    const unused = asked.slice(ran.length)
    const why =
      outcome === 'done'
        ? 'every thread had finished'
        : outcome === 'livelock'
          ? 'the run had entered its livelock cycle'
          : outcome === 'deadlock'
            ? 'the run was deadlocked'
            : `the run ended (${outcome})`
    const shown = unused.length > 12 ? `${unused.slice(0, 12).join(' ')} ...` : unused.join(' ')
    notes.push(
      `note: steps ${ran.length}-${asked.length - 1} of the schedule were not used (${shown}): ${why} after ${ran.length} ${plural(ran.length, 'step')}`,
    )
  }
  return notes
}

/**
 * `mnlab sites`: every notification site (what a policy is a set of) with its kernel function
 * and what a secondary does there, then the site set of each preset and variant.
 */
function cmdSites(f: Flags): number {
  if (f.positional.length > 0) throw new UsageError('mnlab sites takes no arguments')
  /** What a variant adds to a preset's set (nothing: access-flags-notify under start-end). */
  const adds = (p: (typeof PRESETS)[number], v: (typeof VARIANTS)[number]): string[] =>
    namedSites(p, [v]).filter((s) => !namedSites(p).includes(s))
  if (f.opts.has('json')) {
    process.stdout.write(
      JSON.stringify(
        {
          sites: SITES,
          presets: Object.fromEntries(PRESETS.map((p) => [p, namedSites(p)])),
          variants: Object.fromEntries(
            VARIANTS.map((v) => [v, Object.fromEntries(PRESETS.map((p) => [p, adds(p, v)]))]),
          ),
        },
        null,
        2,
      ) + '\n',
    )
    return 0
  }
  const out: string[] = [
    'Notification sites (a policy is a set of them; README, "Policies as call sites"):',
    '',
  ]
  for (const s of SITES) {
    out.push(`  ${s.name}  [${s.group}]`)
    out.push(`      at:   ${s.kernel}`)
    out.push(`      does: ${s.doc}`)
  }
  out.push('', 'Named sets:')
  for (const p of PRESETS) out.push(`  ${p}: ${namedSites(p).join(', ')}`)
  for (const v of VARIANTS) {
    const each = PRESETS.map((p) => `${p}: ${adds(p, v).join(', ') || 'nothing'}`)
    out.push(`  +${v} adds (${each.join('; ')})`)
  }
  out.push(
    '',
    "A custom set: --policy 'sites:a,b', or a name the scenario defines in policies: { mine: [a, b] }.",
  )
  process.stdout.write(out.join('\n') + '\n')
  return 0
}

/** The version in package.json (two folders up from src-main/node and from the bundle in out/node). */
function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as {
      version?: string
    }
    return pkg.version ?? 'unknown'
  } catch {
    return 'unknown'
  }
}

/** `--reduction` levels, each adding to the one before. */
const REDUCTIONS = ['none', 'frames', 'persistent', 'components', 'merge']

const HELP = `mnlab: MMU Notifier Lab, headless
  mnlab --version            the mnlab, engine and Node versions
  mnlab run FILE... [--policy NAME|all|a,b] [--mode exhaustive|random|scripted] [--seed N]
                    [--executions N] [--schedule "C0 D0 ..."] [--max-states N] [--timeout S] [--max-memory MB] [--json]
                    [--bfs] (shortest counterexamples) [--por] (sleep-set reduction)
                    [--first] (stop at the first violation, with its counterexample)
                    [--reduction components|none|frames|persistent|merge] (components, the default:
                     canonical frames, persistent sets, and independent groups of threads run one
                     after the other; none: off; frames: canonical frames only; persistent: frames
                     plus persistent sets; merge: persistent plus invisible steps merged)
  mnlab check [PATH...] [--full]   every scenario under the policies in its expect; exit 1 on a mismatch
                             (an entry expecting a violation stops at the first one; --full: explore all)
  mnlab replay FILE --policy NAME --schedule "C0 D0 ..."   full trace of one schedule
  mnlab replay FILE --policy all|a,b --schedule "..." [--json]   the same schedule under each policy:
                             an entry whose thread is blocked or finished is skipped (and listed),
                             each trace, outcome and why, and which hook made the difference
  mnlab distinguish FILE --policies A,B [--json] [--trace] [--max-states N] [--timeout S]
                             the shortest schedule on which A's and B's outcomes differ (breadth
                             first over both policies' states together), each outcome on it and
                             the first step where their traces differ; exit 4 when the budget ran out
  mnlab synthesize PATH... [--objective sim_ns|secondary_invalidations] [--sites a,b,...] [--policy LIST]
                    [--json] [--jobs N] [--max-states N] [--timeout S]
                             the notifier placements (sets of call sites) under which every scenario
                             holds: the minimal ones, cheapest first, each site with the scenario and
                             counterexample that break without it; the Pareto front of scenarios held
                             against the objective (summed over reference schedules); the presets and
                             --policy placements side by side; and the search's cost. --sites: the
                             candidate sites (default all); --jobs: workers (default one per core).
                             Exit 4 when a budget left a verdict unknown, 130 when cancelled (Ctrl+C)
  mnlab sites [--json]       the notification sites a policy is a set of (kernel function, what a
                             secondary does there) and the site sets of the presets and variants
  mnlab bench [--quick]      start-up, engine and GUI timings (--quick: each figure once, small scenario)
  mnlab notebook check FILE|DIR...    recompute every experiment; exit 1 if a recorded verdict changed
  mnlab notebook record FILE... [--pin] [--stale]   run every experiment (--stale: only stale ones) and record the results
  mnlab notebook export FILE --format md|html [-o OUT]   a self-contained report
Policies: start-end, invalidate-range, arch-hook, each optionally +upgrade-notify, +access-flags-notify, +pri-flush, +kernel-notifier;
  sites:a,b (a set of call sites, see mnlab sites); or a name the scenario defines in policies:.
Sites: ${SITE_NAMES.join(', ')}.
Exit codes: 0 ok, 1 expectation mismatch, 2 invalid input, 4 distinguish or synthesize ran out of budget,
  130 cancelled.
`

/** When the current command started (its --timeout counts from here, loading included). */
let commandStarted = Date.now()

export async function main(argv: readonly string[], pool: WorkerPool = new WorkerPool()): Promise<number> {
  commandStarted = Date.now()
  try {
    const [cmd, ...rest] = argv
    if (!cmd || cmd === 'help' || cmd === '--help' || cmd === '-h') {
      process.stdout.write(HELP)
      return 0
    }
    if (cmd === '--version' || cmd === '-V' || cmd === 'version') {
      process.stdout.write(
        `mnlab ${packageVersion()} (engine ${ENGINE_VERSION}, node ${process.versions.node})\n`,
      )
      return 0
    }
    // `mnlab notebook --help` and `mnlab notebook check --help` print the usage like every
    // other command's --help, rather than an unknown-subcommand or unknown-option error.
    if (cmd === 'notebook' && rest.some((a) => a === '--help' || a === '-h')) {
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
      case 'distinguish':
        return cmdDistinguish(f)
      case 'synthesize':
        return await cmdSynthesize(f, pool)
      case 'sites':
        return cmdSites(f)
      case 'bench':
        return await runBench(pool, { quick: f.opts.has('quick') })
      default:
        throw new UsageError(`unknown command '${cmd}'`, true)
    }
  } catch (e) {
    if (e instanceof ScenarioLoadError) {
      process.stderr.write(e.message + '\n')
      return 2
    }
    if (e instanceof UsageError || e instanceof NotebookUsageError) {
      const usage = e instanceof UsageError && e.usage ? HELP : "run 'mnlab --help' for usage\n"
      process.stderr.write(`mnlab: ${e.message}\n${usage}`)
      return 2
    }
    throw e
  } finally {
    await pool.close()
  }
}

/**
 * The process entry: bin/mnlab.cjs loads the bundle and calls this, whatever name the command
 * was run under. Sets the exit code; a bug in mnlab itself is one line on stderr and exit 3
 * (MNLAB_DEBUG=1 prints the stack), never a silent success.
 */
export function runCli(argv: readonly string[]): void {
  // `mnlab run ... | head` closes the pipe early: that is not an error worth a stack trace.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0)
    throw e
  })
  main(argv).then(
    (code) => {
      process.exitCode = code
      // For the bench's scaling series: this process's peak memory, workers included.
      if (process.env.MNLAB_REPORT_RSS)
        process.stderr.write(`peak_rss_kb ${process.resourceUsage().maxRSS}\n`)
    },
    (e: unknown) => {
      const err = e instanceof Error ? e : new Error(String(e))
      process.stderr.write(
        `mnlab: internal error: ${err.message.split('\n')[0]}\n` +
          (process.env.MNLAB_DEBUG
            ? `${err.stack ?? ''}\n`
            : 'Run with MNLAB_DEBUG=1 for the stack trace.\n'),
      )
      process.exitCode = 3
    },
  )
}
