/**
 * `npm run bench`: reported figures (never asserted in tests):
 *   - start-up: `mnlab --version` and a small scenario's whole run, as separate processes, through
 *     the bundled CLI and, side by side in the same run, through the tsx path it replaced;
 *   - the engine: per policy, the single-thread exhaustive exploration of the two canonical
 *     scenarios, then the wall-clock time of the whole `mnlab run` (all policies in the pool);
 *   - the GUI (benchGui.ts): cold start to an interactive editor, run-to-result in the host.
 * Live progress goes to stderr when it is a terminal (progress.ts).
 */
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { defaultRunOptions, makePolicy, plural, PRESETS, runPolicy } from '../engine'
import { runGuiBench } from './benchGui'
import { REDUCTIONS, scalingRows } from './benchScaling'
import { table } from './format'
import { progressBoard, shouldShowProgress, type ProgressBoard } from './progress'
import { loadScenarioFile } from './scenarioFiles'
import { toWorkerOptions, WorkerPool } from './workerPool'

const BENCH_FILES = [
  'scenarios/cow-ordering.invalidate-range-needed.yaml',
  'scenarios/upgrade-loop.smmu-no-btm.yaml',
]
const SMALL = 'scenarios/upgrade-loop.smmu-no-btm.yaml'
const STARTS = 7

export interface BenchOptions {
  /**
   * `--quick`: every figure once, on the small scenario only (the README test runs the bench
   * this way: it checks that the bench works, not how fast anything is).
   */
  readonly quick?: boolean
}

const fmtStates = (n: number): string => n.toLocaleString('en-US')

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

/** Wall time of a whole process, in ms; throws if it fails (a bench of a broken command is no bench). */
function timeProcess(argv: readonly string[], cwd: string): number {
  const t0 = process.hrtime.bigint()
  const r = spawnSync(process.execPath, argv, { encoding: 'utf8', cwd })
  const ms = Number(process.hrtime.bigint() - t0) / 1e6
  if (r.status !== 0 || !r.stdout) throw new Error(`${argv.join(' ')} exited ${r.status}: ${r.stderr}`)
  return ms
}

/** Start-up of the built CLI against the tsx path it replaced, interleaved so both see the same load. */
function startupRows(root: string, board: ProgressBoard, starts: number): string[][] {
  const launcher = path.join(root, 'bin', 'mnlab.cjs')
  const viaTsx = (args: string[]): string[] => [
    '-e',
    `require('tsx/cjs'); require(${JSON.stringify(path.join(root, 'src-main/node/cli.ts'))}).runCli(${JSON.stringify(args)})`,
  ]
  const cases: Array<[string, string[], string[]]> = [
    ['mnlab --version', [launcher, '--version'], viaTsx(['--version'])],
    [`mnlab run ${path.basename(SMALL)}`, [launcher, 'run', SMALL], viaTsx(['run', SMALL])],
  ]
  const rows: string[][] = [['command', 'built (median ms)', 'tsx (median ms)', 'ratio', 'runs']]
  const task = board.task('start-up', 'processes', cases.length * starts * 2)
  let n = 0
  for (const [name, built, tsx] of cases) {
    const a: number[] = []
    const b: number[] = []
    timeProcess(built, root) // a fresh bundle is built here, not timed
    for (let i = 0; i < starts; i++) {
      a.push(timeProcess(built, root))
      b.push(timeProcess(tsx, root))
      task.update((n += 2))
    }
    rows.push([
      name,
      median(a).toFixed(0),
      median(b).toFixed(0),
      `${(median(b) / median(a)).toFixed(1)}x`,
      String(starts),
    ])
  }
  task.done('done')
  return rows
}

export async function runBench(pool: WorkerPool, options: BenchOptions = {}): Promise<number> {
  const board = progressBoard({ enabled: shouldShowProgress(false) })
  const root = path.resolve(__dirname, '..', '..')
  const out: string[] = []
  try {
    out.push(
      `start-up (whole process, node ${process.versions.node}):\n${table(startupRows(root, board, options.quick ? 1 : STARTS))}`,
    )
    const rows: string[][] = [
      ['scenario', 'policy', 'reduction', 'verdict', 'states', 'transitions', 'ms', 'states/s'],
    ]
    const wall: string[][] = [['scenario', 'policies', 'workers', 'wall ms']]
    for (const f of options.quick ? [SMALL] : BENCH_FILES) {
      const sc = loadScenarioFile(path.resolve(root, f))
      const opts = { ...defaultRunOptions(sc), mode: 'exhaustive' as const }
      for (const [p, reduction] of PRESETS.flatMap((p) => REDUCTIONS.map((r) => [p, r] as const))) {
        const task = board.task(`${path.basename(f)} ${p} ${reduction}`, 'states', null)
        const t0 = process.hrtime.bigint()
        const r = runPolicy(sc, makePolicy(p), {
          ...opts,
          budget: {
            ...opts.budget,
            canonicalFrames: reduction !== 'none',
            persistent: reduction === 'persistent' || reduction === 'components',
            components: reduction === 'components',
            onProgress: (pr) => task.update(pr.states),
          },
        })
        const ms = Number(process.hrtime.bigint() - t0) / 1e6
        task.done(
          `${r.verdict}, ${r.stats.states} ${plural(r.stats.states, 'state')}, ${(ms / 1000).toFixed(1)} s`,
        )
        rows.push([
          path.basename(f),
          p,
          reduction,
          r.verdict,
          String(r.stats.states),
          String(r.stats.steps),
          ms.toFixed(0),
          String(Math.round((r.stats.states / ms) * 1000)),
        ])
      }
      const task = board.task(`${path.basename(f)} pool`, 'policies', PRESETS.length)
      let done = 0
      const t0 = process.hrtime.bigint()
      await Promise.all(
        PRESETS.map((p) => pool.run(sc, p, toWorkerOptions(opts, null)).then(() => task.update(++done))),
      )
      const ms = Number(process.hrtime.bigint() - t0) / 1e6
      task.done(`${(ms / 1000).toFixed(1)} s`)
      wall.push([path.basename(f), String(PRESETS.length), String(pool.size), ms.toFixed(0)])
    }
    out.push(`engine, one thread, exhaustive:\n${table(rows)}`)
    out.push(`mnlab run (worker pool, including worker start-up):\n${table(wall)}`)
    const budget = { timeoutS: options.quick ? 10 : 30, maxStates: 2_000_000 }
    out.push(
      `scaling: one mnlab run process per row, ${fmtStates(budget.maxStates)} states / ${budget.timeoutS} s budget; none = --reduction none (the plain explorer), frames = canonical frames only (the default until December 2026), persistent = frames plus persistent sets, components = persistent plus components (the default)\n` +
        table(
          scalingRows({
            root,
            maxPairs: options.quick ? 1 : 4,
            maxPairsPlain: options.quick ? 1 : 2,
            maxExtraDevices: options.quick ? 0 : 2,
            board,
            ...budget,
          }),
        ),
    )
    // The engine figures are printed before the GUI's, which take a browser.
    board.stop()
    process.stdout.write(out.join('\n\n') + '\n')
    return await runGuiBench({
      progress: progressBoard({ enabled: shouldShowProgress(false) }),
      quick: options.quick,
    })
  } finally {
    board.stop()
  }
}
