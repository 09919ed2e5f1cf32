/**
 * The scaling series of `npm run bench` (reported, never asserted): how the explorer grows with
 * the scenario, the plain explorer (`--reduction none`) and the default side by side in one run.
 *   - pairs: the COW-ordering race of cow-ordering.flush-at-end.yaml, N independent copies
 *     (pages A_i B_i, threads C0_i C1_i C2_i D0_i, one IOMMU flushing at range_end), N = 1..4;
 *   - devices: cow-ordering.sw-mirror.yaml with 1..2 more device threads reading A.
 * Each figure is a separate `mnlab run` process (so its peak RSS is its own), one policy, with
 * a state budget and a time budget: start-end with --first (a violation is the answer), and
 * arch-hook exhaustive (it holds: every state must be seen).
 */
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { RunResult } from '../engine'
import type { ProgressBoard } from './progress'

/** N independent copies of the flush-at-end COW race (Glisse 2017's [Time N] scenario). */
export function cowPairs(n: number): string {
  const ids = Array.from({ length: n }, (_, i) => i)
  const pages = ids.flatMap((i) => [
    `  A${i}: { value: 0, prot: rw, cow: true }`,
    `  B${i}: { value: 0, prot: rw, cow: true }`,
  ])
  const cached = ids.flatMap((i) => [`A${i}`, `B${i}`]).join(', ')
  return [
    `title: ${n} independent copies of the flush-at-end COW race`,
    'arch: x86_64',
    'pages:',
    ...pages,
    'secondary:',
    `  - { name: iommu, type: hw-walker, flush_at: end, cached: [${cached}] }`,
    'cpus:',
    ...ids.flatMap((i) => [
      `  C0_${i}: [cow_fault A${i}]`,
      `  C1_${i}: [cow_fault B${i}]`,
      `  C2_${i}: [write A${i} 1, write B${i} 1]`,
    ]),
    'devices:',
    ...ids.map((i) => `  D0_${i}: { via: iommu, ops: [read B${i} -> r1_${i}, read A${i} -> r0_${i}] }`),
    `forbid: ${ids.map((i) => `(r1_${i} == 1 && r0_${i} == 0)`).join(' || ')}`,
    '',
  ].join('\n')
}

/** cow-ordering.sw-mirror.yaml with `extra` more device threads reading A through KVM. */
export function mirrorDevices(extra: number): string {
  return [
    `title: the sw-mirror COW race with ${extra} more device threads`,
    'arch: x86_64',
    'pages:',
    '  A: { value: 0, prot: rw, cow: true }',
    '  B: { value: 0, prot: rw, cow: true }',
    'secondary:',
    '  - { name: kvm, type: sw-mirror, cached: [A, B] }',
    'cpus:',
    '  C0: [cow_fault A]',
    '  C1: [cow_fault B]',
    '  C2: [write A 1, write B 1]',
    'devices:',
    '  D0: { via: kvm, ops: [read B -> r1, read A -> r0] }',
    ...Array.from({ length: extra }, (_, i) => `  D${i + 1}: { via: kvm, ops: [read A -> r${i + 2}] }`),
    'forbid: r1 == 1 && r0 == 0',
    '',
  ].join('\n')
}

/** The explorers compared side by side, from the plain one to the default. */
export const REDUCTIONS = ['none', 'frames', 'persistent', 'components'] as const

export interface ScalingOptions {
  readonly root: string
  readonly maxPairs: number
  /** Pairs beyond this are not run without reduction (they only hit the budget). */
  readonly maxPairsPlain: number
  readonly maxExtraDevices: number
  readonly timeoutS: number
  readonly maxStates: number
  readonly board: ProgressBoard
}

interface Measure {
  readonly verdict: string
  readonly states: number
  readonly transitions: number
  readonly ms: number
  readonly rssMb: number | null
}

function measure(
  o: ScalingOptions,
  file: string,
  policy: string,
  reduction: string,
  first: boolean,
): Measure {
  const args = [
    path.join(o.root, 'bin', 'mnlab.cjs'),
    'run',
    file,
    '--policy',
    policy,
    '--json',
    '--reduction',
    reduction,
    '--max-states',
    String(o.maxStates),
    '--timeout',
    String(o.timeoutS),
    ...(first ? ['--first'] : []),
  ]
  const t0 = process.hrtime.bigint()
  const r = spawnSync(process.execPath, args, {
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
    env: { ...process.env, MNLAB_REPORT_RSS: '1' },
  })
  const ms = Number(process.hrtime.bigint() - t0) / 1e6
  if (r.status !== 0) throw new Error(`mnlab run ${path.basename(file)} exited ${r.status}: ${r.stderr}`)
  const res = (JSON.parse(r.stdout) as { run: RunResult }).run.results[0]!
  const rss = /peak_rss_kb (\d+)/.exec(r.stderr)
  return {
    verdict: res.verdict,
    states: res.stats.states,
    transitions: res.stats.steps,
    ms,
    rssMb: rss ? Math.round(Number(rss[1]) / 1024) : null,
  }
}

const fmtN = (x: number): string => x.toLocaleString('en-US')

export function scalingRows(o: ScalingOptions): string[][] {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mnlab-scaling-'))
  const rows: string[][] = [
    [
      'scenario',
      'policy',
      'reduction',
      'verdict',
      'states',
      'transitions',
      'wall s',
      'states/s',
      'peak RSS MB',
    ],
  ]
  const cases: Array<[string, string, number]> = []
  for (let n = 1; n <= o.maxPairs; n++) {
    const f = path.join(dir, `cow-pairs-${n}.yaml`)
    writeFileSync(f, cowPairs(n))
    cases.push([`${n} COW pair${n > 1 ? 's' : ''}`, f, n])
  }
  for (let d = 1; d <= o.maxExtraDevices; d++) {
    const f = path.join(dir, `sw-mirror-plus-${d}.yaml`)
    writeFileSync(f, mirrorDevices(d))
    cases.push([`sw-mirror COW + ${d} device${d > 1 ? 's' : ''}`, f, d])
  }
  const total = cases.length * 2 * REDUCTIONS.length
  const task = o.board.task('scaling', 'runs', total)
  let done = 0
  try {
    for (const [name, file, size] of cases) {
      const pairs = name.includes('pair')
      for (const [policy, first] of [
        ['start-end', true],
        ['arch-hook', false],
      ] as const) {
        for (const reduction of REDUCTIONS) {
          task.update(++done)
          if (pairs && reduction === 'none' && size > o.maxPairsPlain) {
            rows.push([
              name,
              policy + (first ? ' --first' : ''),
              reduction,
              'not run (beyond the budget)',
              '',
              '',
              '',
              '',
              '',
            ])
            continue
          }
          const m = measure(o, file, policy, reduction, first)
          rows.push([
            name,
            policy + (first ? ' --first' : ''),
            reduction,
            m.verdict,
            fmtN(m.states),
            fmtN(m.transitions),
            (m.ms / 1000).toFixed(1),
            fmtN(Math.round((m.states / m.ms) * 1000)),
            m.rssMb === null ? '-' : String(m.rssMb),
          ])
        }
      }
    }
  } finally {
    task.done('done')
    rmSync(dir, { recursive: true, force: true })
  }
  return rows
}
