import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import type { RunResult } from '../engine'
import { cowPairs } from './benchScaling'
import { EXIT_BUDGET, scheduleNotes } from './cli'
import type { CompareResult, DistinguishResult } from '../api/labApi'
import { mnlab } from './cliTestkit'

const UPGRADE = fileURLToPath(new URL('../../scenarios/upgrade-loop.smmu-no-btm.yaml', import.meta.url))
const UPGRADE_TEXT = readFileSync(UPGRADE, 'utf8')
const PRESETS_MSG = 'expected start-end, invalidate-range, arch-hook or sites:a,b'
const METRIC_KEYS = [
  'notifier_calls',
  'secondary_invalidations',
  'device_faults',
  'mirror_zaps',
  'cpu_tlb_flushes',
  'sim_ns',
]

let dir = ''
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'mnlab-cli-test-'))
})
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true })
})
afterEach(() => {
  vi.restoreAllMocks()
})

/** Output with its wrapped lines joined (a continuation is indented 6 or more spaces). */
function unwrap(text: string): string {
  return text.replace(/\n {6,}/g, ' ')
}

function writeScenario(name: string, text: string): string {
  const file = path.join(dir, name)
  writeFileSync(file, text)
  return file
}

describe('mnlab: invalid input exits 2 with the error on stderr', () => {
  it('an invalid scenario file: file:line:col: message', async () => {
    const file = writeScenario('bad-page.yaml', UPGRADE_TEXT.replace('[write_fault P]', '[cow_fault Z]'))
    // line 9 is "  C0: [cow_fault Z]"
    expect(UPGRADE_TEXT.split('\n')[8]).toBe('  C0: [write_fault P]')
    for (const cmd of ['run', 'check']) {
      const r = await mnlab(cmd, file)
      expect(r.code).toBe(2)
      expect(r.stdout).toBe('')
      expect(r.stderr).toBe(`${file}:9:18: unknown page 'Z' (did you mean 'P'?); pages are P\n`)
    }
  })

  it('several problems are all printed, one per line, in order', async () => {
    const file = writeScenario(
      'bad-many.yaml',
      UPGRADE_TEXT.replace('arch: arm64', 'arch: arm65').replace('[write P 7]', '[write P]'),
    )
    const r = await mnlab('run', file)
    expect(r.code).toBe(2)
    expect(r.stderr.trimEnd().split('\n')).toEqual([
      `${file}:3:7: arch must be one of x86_64, arm64; found string "arm65" (did you mean 'arm64'?)`,
      `${file}:11:33: write needs an integer value from -2147483648 to 2147483647 after the page, as in 'write A 1'`,
    ])
  })

  it('a missing file', async () => {
    const file = path.join(dir, 'does-not-exist.yaml')
    const r = await mnlab('run', file)
    expect(r.code).toBe(2)
    expect(r.stderr).toBe(`${file}:1:1: no such file or directory\n`)
  })

  it('an unknown command: the one error that prints the usage', async () => {
    const r = await mnlab('frobnicate')
    expect(r.code).toBe(2)
    expect(r.stdout).toBe('')
    expect(r.stderr.split('\n')[0]).toBe("mnlab: unknown command 'frobnicate'")
    expect(r.stderr.split('\n')[1]).toBe('mnlab: MMU Notifier Lab, headless')
  })

  it('an unknown option', async () => {
    const r = await mnlab('run', UPGRADE, '--frob')
    expect(r.code).toBe(2)
    expect(r.stdout).toBe('')
    expect(r.stderr.split('\n')[0]).toBe('mnlab: unknown option --frob')
  })

  it('an option without its value', async () => {
    const r = await mnlab('run', UPGRADE, '--policy')
    expect(r.code).toBe(2)
    expect(r.stderr.split('\n')[0]).toBe('mnlab: --policy needs a value')
  })

  it('a bad --policy names the valid presets', async () => {
    const r = await mnlab('run', UPGRADE, '--policy', 'start-ends')
    expect(r.code).toBe(2)
    expect(r.stdout).toBe('')
    expect(r.stderr.split('\n')[0]).toBe(
      `mnlab: unknown policy 'start-ends' (did you mean 'start-end'?); ${PRESETS_MSG}`,
    )
    const r2 = await mnlab('run', UPGRADE, '--policy=arch-hook,bogus')
    expect(r2.code).toBe(2)
    expect(r2.stderr.split('\n')[0]).toBe(`mnlab: unknown policy 'bogus'; ${PRESETS_MSG}`)
  })

  it('run --schedule with a finished thread is a usage error naming the step and policy, exit 2', async () => {
    const r = await mnlab('run', UPGRADE, '--schedule', 'C0 C0 C0 C0 C0 C0 C0 C0')
    expect(r.code).toBe(2)
    expect(r.stdout).toBe('')
    expect(r.stderr.split('\n')[0]).toBe(
      'mnlab: --schedule step 2 under start-end: C0 cannot run at step 2: done',
    )
    expect(r.stderr).not.toMatch(/ScheduleError|at .*\.ts:\d+/)
  })

  it("a file's explore.schedule that cannot be followed: file:line:column at the step, exit 2", async () => {
    const file = writeScenario(
      'sched.yaml',
      `${UPGRADE_TEXT.replace(/^expect:.*$/m, '')}explore: { mode: scripted, schedule: [C0, C0, C0, C0, C0, C0, C0, C0] }\n`,
    )
    const r = await mnlab('run', file)
    expect(r.code).toBe(2)
    expect(r.stdout).toBe('')
    const line = UPGRADE_TEXT.replace(/^expect:.*$/m, '').split('\n').length
    expect(r.stderr.split('\n')[0]).toBe(
      `${file}:${line}:${'explore: { mode: scripted, schedule: [C0, C0, '.length + 1}: explore.schedule step 2 cannot be followed under start-end: C0 cannot run at step 2: done`,
    )
  })

  it('a bad --mode', async () => {
    const r = await mnlab('run', UPGRADE, '--mode', 'thorough')
    expect(r.code).toBe(2)
    expect(r.stdout).toBe('')
    expect(r.stderr.split('\n')[0]).toBe(
      "mnlab: --mode must be exhaustive, random or scripted, got 'thorough'",
    )
  })

  it('a non-integer --seed', async () => {
    const r = await mnlab('run', UPGRADE, '--mode', 'random', '--seed', 'x1')
    expect(r.code).toBe(2)
    expect(r.stderr.split('\n')[0]).toBe("mnlab: --seed takes a non-negative integer, got 'x1'")
  })

  it('run without files', async () => {
    const r = await mnlab('run')
    expect(r.code).toBe(2)
    expect(r.stderr.split('\n')[0]).toBe('mnlab: mnlab run needs at least one scenario file')
  })

  it('replay without one --policy, or with an unknown thread in the schedule', async () => {
    const r = await mnlab('replay', UPGRADE, '--schedule', 'C0 D0')
    expect(r.code).toBe(2)
    expect(r.stderr.split('\n')[0]).toBe(
      'mnlab: mnlab replay needs --policy NAME (or --policy all|a,b to compare policies on the schedule)',
    )
    const r2 = await mnlab('replay', UPGRADE, '--policy', 'start-end', '--schedule', 'C0 D9')
    expect(r2.code).toBe(2)
    expect(r2.stderr.split('\n')[0]).toBe("mnlab: schedule step 1: unknown thread 'D9'; threads are C0, D0")
  })
})

describe('mnlab: a usage error is its one line and a pointer to --help, not the usage', () => {
  const COW = fileURLToPath(
    new URL('../../scenarios/cow-ordering.invalidate-range-needed.yaml', import.meta.url),
  )
  const HINT = "run 'mnlab --help' for usage"
  const cases: Array<[string, string[], string]> = [
    [
      'an unknown policy',
      ['replay', COW, '--policy', 'start-end,nope', '--schedule', 'C0'],
      `unknown policy 'nope'; ${PRESETS_MSG}`,
    ],
    [
      'an unknown schedule thread',
      ['replay', COW, '--policy', 'all', '--schedule', 'C0 X9'],
      "schedule step 1: unknown thread 'X9'; threads are C0, C1, C2, D0, D1",
    ],
    [
      'a thread name in the wrong case',
      ['replay', COW, '--policy', 'arch-hook', '--schedule', 'C0 c1'],
      "schedule step 1: unknown thread 'c1' (did you mean 'C1'?); threads are C0, C1, C2, D0, D1",
    ],
    [
      'the same in run --schedule',
      ['run', COW, '--policy', 'arch-hook', '--schedule', 'c1'],
      "schedule step 0: unknown thread 'c1' (did you mean 'C1'?); threads are C0, C1, C2, D0, D1",
    ],
    [
      'replay without --schedule',
      ['replay', COW, '--policy', 'arch-hook'],
      'mnlab replay needs --schedule "C0 D0 ..." (as printed by mnlab run)',
    ],
    [
      'distinguish with one policy',
      ['distinguish', COW, '--policies', 'start-end'],
      "mnlab distinguish needs two policies, as --policies A,B; got 'start-end'",
    ],
    [
      'distinguish with three policies',
      ['distinguish', COW, '--policies', 'start-end,arch-hook,invalidate-range'],
      "mnlab distinguish needs two policies, as --policies A,B; got 'start-end,arch-hook,invalidate-range'",
    ],
    [
      'distinguish with the same policy twice',
      ['distinguish', COW, '--policies', 'arch-hook,arch-hook'],
      'policies: distinguish needs two different policies, got arch-hook twice (a policy never differs from itself)',
    ],
  ]
  for (const [what, argv, line] of cases)
    it(what, async () => {
      const r = await mnlab(...argv)
      expect(r.code).toBe(2)
      expect(r.stdout).toBe('')
      expect(r.stderr).toBe(`mnlab: ${line}\n${HINT}\n`)
      expect(r.stderr).not.toContain('MMU Notifier Lab, headless')
    })
})

describe('mnlab help', () => {
  it('prints usage on stdout and exits 0', async () => {
    const r = await mnlab()
    expect(r.code).toBe(0)
    expect(r.stderr).toBe('')
    expect(r.stdout).toMatch(/^mnlab: MMU Notifier Lab, headless\n/)
    expect(r.stdout).toContain(
      'Exit codes: 0 ok, 1 expectation mismatch, 2 invalid input, 4 distinguish or synthesize ran out of budget,\n  130 cancelled.',
    )
    expect(r.stdout).toMatch(
      /^ {2}mnlab synthesize PATH\.\.\. \[--objective sim_ns\|secondary_invalidations\]/m,
    )
  })
})

interface JsonCounterexample {
  invariant: string
  schedule: string[]
  cycle: string[] | null
}
interface JsonResult {
  policy: string
  verdict: string
  invariants: Record<string, string>
  counterexamples: JsonCounterexample[]
  metrics: Record<string, number>
  expected: string | null
  matches: boolean | null
}

describe('mnlab run --json and replay', () => {
  it('reports verdicts, metrics and a replayable livelock counterexample', async () => {
    const r = await mnlab('run', '--json', UPGRADE)
    expect(r.code).toBe(0)
    expect(r.stderr).toBe('')
    const out = JSON.parse(r.stdout) as { file: string; run: { arch: string; results: JsonResult[] } }
    expect(out.file).toBe(UPGRADE)
    expect(out.run.arch).toBe('arm64')
    const results = out.run.results
    expect(results.map((x) => [x.policy, x.verdict])).toEqual([
      ['start-end', 'violated'],
      ['invalidate-range', 'violated'],
      ['arch-hook', 'holds'],
    ])
    expect(results.map((x) => x.matches)).toEqual([true, true, true])
    for (const x of results) {
      expect(Object.keys(x.metrics)).toEqual(METRIC_KEYS)
      for (const k of METRIC_KEYS) expect(Number.isInteger(x.metrics[k]), k).toBe(true)
    }
    expect(results[2]!.counterexamples).toEqual([])

    const se = results[0]!
    expect(se.invariants.progress).toBe('violated')
    const cx = se.counterexamples.find((c) => c.invariant === 'progress')
    expect(cx).toBeDefined()
    expect(cx!.schedule.length).toBeGreaterThan(0)
    expect(cx!.cycle?.length ?? 0).toBeGreaterThan(0)
    // The loop is the device faulting on its own.
    expect(new Set(cx!.cycle)).toEqual(new Set(['D0']))

    const schedule = [...cx!.schedule, ...cx!.cycle!].join(' ')
    const rp = await mnlab('replay', UPGRADE, '--policy', 'start-end', '--schedule', schedule)
    expect(rp.code).toBe(0)
    expect(rp.stderr).toBe('')
    expect(rp.stdout.split('\n')[0]).toBe(
      `${UPGRADE}: RO->RW upgrade in place leaves an SMMU without BTM faulting forever`,
    )
    expect(rp.stdout).toContain(
      `policy start-end, schedule of ${cx!.schedule.length + cx!.cycle!.length} steps`,
    )
    expect(rp.stdout).toMatch(/^outcome: livelock$/m)
    expect(rp.stdout).toContain('livelock')
  })

  it('--policy restricts the results', async () => {
    const r = await mnlab('run', UPGRADE, '--json', '--policy', 'arch-hook')
    expect(r.code).toBe(0)
    const out = JSON.parse(r.stdout) as { run: { results: JsonResult[] } }
    expect(out.run.results.map((x) => [x.policy, x.verdict, x.expected])).toEqual([
      ['arch-hook', 'holds', 'holds'],
    ])
  })
})

describe('mnlab run: hook hints under each counterexample', () => {
  const VARIANTS = fileURLToPath(new URL('../../scenarios/upgrade-loop.variants.yaml', import.meta.url))

  it("names, for each policy of the run that holds, the hook that invalidated the counterexample's stale entry", async () => {
    const r = await mnlab('run', VARIANTS)
    expect(r.code).toBe(0)
    const holding = [
      'arch-hook',
      'invalidate-range+access-flags-notify',
      'start-end+pri-flush',
      'invalidate-range+pri-flush',
    ]
    // Each counterexample block (its why line, then indented lines) ends with one hint per holding policy.
    const blocks = unwrap(r.stdout)
      .split(/\n(?= {2}\S+: progress: )/)
      .slice(1)
    expect(blocks).toHaveLength(5)
    for (const b of blocks) {
      const hints = [...b.matchAll(/^ {4}hint \(([^)]+)\): under \1, /gm)].map((m) => m[1])
      expect(hints).toEqual(holding)
    }
    expect(unwrap(r.stdout)).toMatch(
      /^ {4}hint \(arch-hook\): under arch-hook, mmu_notifier_arch_invalidate_secondary_tlbs \(ptep_set_access_flags,/m,
    )
    // The run's own lines are all still there.
    expect(r.stdout).toMatch(/^ {2}metrics measured on: /m)
    // A single policy has nothing to hold against: no hints.
    const one = await mnlab('run', VARIANTS, '--policy', 'start-end')
    expect(one.stdout).not.toMatch(/hint \(/)
  })
})

describe('mnlab check', () => {
  it('passes on scenarios/upgrade-loop.smmu-no-btm.yaml', async () => {
    const r = await mnlab('check', UPGRADE)
    expect(r.code).toBe(0)
    expect(r.stderr).toBe('')
    expect(r.stdout).not.toContain('FAIL')
    expect(r.stdout).toMatch(/^ok {3}\S+ start-end: expect violated, violated /m)
    expect(r.stdout).toMatch(/^ok {3}\S+ invalidate-range: expect violated, violated /m)
    expect(r.stdout).toMatch(/^ok {3}\S+ arch-hook: expect holds, holds /m)
    expect(r.stdout.trimEnd().split('\n').at(-1)).toBe('3 passed, 0 failed')
  })

  it('exits 1 and prints FAIL when an expectation is wrong', async () => {
    const file = writeScenario(
      'wrong-expect.yaml',
      UPGRADE_TEXT.replace(
        'expect: { start-end: violated, invalidate-range: violated, arch-hook: holds }',
        'expect: { start-end: holds, arch-hook: holds }',
      ),
    )
    expect(readFileSync(file, 'utf8')).toContain('expect: { start-end: holds, arch-hook: holds }')
    const r = await mnlab('check', file)
    expect(r.code).toBe(1)
    expect(r.stderr).toBe('')
    expect(r.stdout).toMatch(
      /^FAIL \S*wrong-expect\.yaml start-end: expect holds, violated \[\d+ states\] {2}\(got violated; violated: progress\)$/m,
    )
    expect(r.stdout).toMatch(/^ok {3}\S*wrong-expect\.yaml arch-hook: expect holds, holds /m)
    expect(r.stdout.trimEnd().split('\n').at(-1)).toBe('1 passed, 1 failed')
  })

  it('an exact set of violated invariants: ok when it is the set, FAIL naming what is missing and what is extra', async () => {
    const MUNMAP = fileURLToPath(new URL('../../scenarios/munmap-uaf.flush-at-start.yaml', import.meta.url))
    const text = readFileSync(MUNMAP, 'utf8')
    const line = 'expect: { start-end: use-after-free, invalidate-range: holds, arch-hook: holds }'
    expect(text).toContain(line)
    const exact = (set: string, name: string) =>
      writeScenario(
        name,
        text.replace(line, `expect: { start-end: { violated: [${set}] }, arch-hook: holds }`),
      )
    const ok = await mnlab('check', exact('use-after-free', 'exact-ok.yaml'))
    expect(ok.code).toBe(0)
    expect(ok.stdout).toMatch(
      /^ok {3}\S*exact-ok\.yaml start-end: expect violated: \[use-after-free\], violated /m,
    )
    const bad = await mnlab('check', exact('lost-write, stale-after-return', 'exact-bad.yaml'))
    expect(bad.code).toBe(1)
    expect(bad.stdout).toMatch(
      /^FAIL \S*exact-bad\.yaml start-end: expect violated: \[lost-write, stale-after-return\], violated \[\d+ states\] {2}\(missing lost-write, stale-after-return; extra use-after-free; violated: use-after-free\)$/m,
    )
    expect(bad.stdout.trimEnd().split('\n').at(-1)).toBe('1 passed, 1 failed')
  })

  it('a scenario without an expect block fails', async () => {
    const file = writeScenario('no-expect.yaml', UPGRADE_TEXT.replace(/^expect:.*$/m, ''))
    const r = await mnlab('check', file)
    expect(r.code).toBe(1)
    expect(r.stdout).toContain(`FAIL ${path.relative(process.cwd(), file)}: no expect block`)
    expect(r.stdout.trimEnd().split('\n').at(-1)).toBe('0 passed, 1 failed')
  })
})

describe('sampled and budget-cut runs against an expect of holds', () => {
  const COW = fileURLToPath(new URL('../../scenarios/cow-ordering.flush-at-end.yaml', import.meta.url))
  const COW_TEXT = readFileSync(COW, 'utf8')

  it('run marks them "not proven", never MISMATCH; a found violation still matches its expect', async () => {
    const r = await mnlab('run', COW, '--mode', 'random', '--seed', '7', '--executions', '500')
    expect(r.code).toBe(0)
    expect(r.stdout).not.toContain('MISMATCH')
    expect(r.stdout).toMatch(/^\s+start-end\s+violated\s+forbid\s+ok\s/m)
    expect(r.stdout).toMatch(/^\s+arch-hook\s+unknown\s+holds\s+not proven\s/m)
    expect(r.stdout).toContain(
      'arch-hook: not proven (random: 500 schedules, no violation); only an exhaustive run proves holds',
    )
  })

  it('check passes them, says how many were not proven, and fails a violation found where holds was expected', async () => {
    const ok = await mnlab('check', COW, '--mode', 'random', '--seed', '7', '--executions', '500')
    expect(ok.code).toBe(0)
    expect(ok.stdout).toMatch(
      /^not proven \S+ invalidate-range: expect holds, unknown .*\(random: 500 schedules, no violation\)$/m,
    )
    expect(ok.stdout).toMatch(/^2 expected to hold and not proven: /m)
    expect(ok.stdout.trimEnd().split('\n').at(-1)).toBe('3 passed, 0 failed')

    const wrong = writeScenario('cow-holds.yaml', COW_TEXT.replace('start-end: forbid', 'start-end: holds'))
    const bad = await mnlab('check', wrong, '--mode', 'random', '--seed', '7', '--executions', '500')
    expect(bad.code).toBe(1)
    expect(bad.stdout).toMatch(/^FAIL \S+ start-end: expect holds, violated/m)

    const cut = await mnlab('check', COW, '--max-states', '50')
    expect(cut.stdout).toMatch(
      /^not proven \S+ arch-hook: .*\(state budget reached \(50 states\), no violation found in 50 states, depth \d+, \d+ found but not yet expanded\)$/m,
    )
  })
})

describe('replay reports the schedule steps it did not use', () => {
  it('steps after every thread finished are listed', async () => {
    const r = await mnlab(
      'replay',
      UPGRADE,
      '--policy',
      'arch-hook',
      '--schedule',
      'C0 C0 D0 D0 D0 D0 D0 D0 D0 D0 D0 D0',
    )
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^outcome: done$/m)
    expect(r.stdout.trimEnd().split('\n').at(-1)).toBe(
      'note: steps 3-11 of the schedule were not used (D0 D0 D0 D0 D0 D0 D0 D0 D0): every thread had finished after 3 steps',
    )
  })

  it('scheduleNotes names forced steps and the unused tail', () => {
    expect(scheduleNotes(['C0', 'D0', 'D0'], ['C0', 'D0', 'D0'], 'done')).toEqual([])
    expect(scheduleNotes(['C0', 'C0', 'D0', 'D0'], ['C0', 'D0'], 'done')).toEqual([
      'note: the run left the schedule (strong fairness ran a starved thread): step 1 ran D0 instead of C0',
      'note: steps 2-3 of the schedule were not used (D0 D0): every thread had finished after 2 steps',
    ])
    expect(scheduleNotes(['D0', 'D0', 'D0'], ['D0', 'D0'], 'livelock')[0]).toMatch(
      /livelock cycle after 2 steps$/,
    )
  })
})

describe('--first and --reduction', () => {
  const COW = fileURLToPath(new URL('../../scenarios/cow-ordering.flush-at-end.yaml', import.meta.url))

  it('--first stops at the first violation with a counterexample that replays to it', async () => {
    const full = await mnlab('run', COW, '--policy', 'start-end', '--json')
    const first = await mnlab('run', COW, '--policy', 'start-end', '--json', '--first')
    expect(first.code).toBe(0)
    const f = (JSON.parse(first.stdout) as { run: RunResult }).run.results[0]!
    const a = (JSON.parse(full.stdout) as { run: RunResult }).run.results[0]!
    expect(f.verdict).toBe('violated')
    expect(f.invariants.forbid).toBe('violated')
    expect(f.stats.complete).toBe(false)
    expect(f.stats.cutReason).toMatch(/^stopped at the first violation found \(forbid\)/)
    expect(f.stats.states).toBeLessThan(a.stats.states)
    // invariants it did not finish exploring are unknown, not holds
    expect(f.invariants['use-after-free']).toBe('unknown')
    const cx = f.counterexamples[0]!
    const rp = await mnlab('replay', COW, '--policy', 'start-end', '--schedule', cx.schedule.join(' '))
    expect(rp.stdout).toMatch(/^violation: forbid at step \d+/m)
  })

  it('--reduction none explores the plain state space, with the same verdicts and more states', async () => {
    const plain = JSON.parse((await mnlab('run', COW, '--json', '--reduction', 'none')).stdout) as {
      run: RunResult
    }
    const canon = JSON.parse((await mnlab('run', COW, '--json')).stdout) as { run: RunResult }
    for (let i = 0; i < 3; i++) {
      const p = plain.run.results[i]!
      const c = canon.run.results[i]!
      expect(c.verdict).toBe(p.verdict)
      expect(c.invariants).toEqual(p.invariants)
      expect(c.stats.states).toBeLessThan(p.stats.states)
    }
    expect((await mnlab('run', COW, '--reduction', 'symmetry')).code).toBe(2)
  })

  it('by default two independent COW races run one after the other: arch-hook holds on 2 pairs, which canonical frames alone cannot finish in 300k states', async () => {
    const file = path.join(dir, 'two-pairs.yaml')
    writeFileSync(file, cowPairs(2))
    const out = await mnlab('run', file, '--policy', 'arch-hook', '--json')
    expect(out.code).toBe(0)
    const r = (JSON.parse(out.stdout) as { run: RunResult }).run.results[0]!
    expect(r.verdict).toBe('holds')
    expect(r.stats.complete).toBe(true)
    expect(r.stats.reduction).toMatch(/components: [1-9][\d,]* states? ran one group alone/)
    const frames = await mnlab(
      'run',
      file,
      '--policy',
      'arch-hook',
      '--json',
      '--reduction',
      'frames',
      '--max-states',
      '300000',
    )
    const f = (JSON.parse(frames.stdout) as { run: RunResult }).run.results[0]!
    expect(f.verdict).toBe('unknown')
    expect(f.stats.states).toBeGreaterThan(r.stats.states)
  }, 120_000)
})

describe('--timeout bounds the whole command', () => {
  const COW = fileURLToPath(
    new URL('../../scenarios/cow-ordering.invalidate-range-needed.yaml', import.meta.url),
  )

  it('a policy still queued when the budget runs out stops at once (the budget is not per policy)', async () => {
    // Three policies on a pool of two: the third waits for a worker until the first two stop.
    const { main } = await import('./cli')
    const { WorkerPool, tsxWorker } = await import('./workerPool')
    const pool = new WorkerPool(tsxWorker, 2)
    let out = ''
    vi.spyOn(process.stdout, 'write').mockImplementation(((s: string) => {
      out += s
      return true
    }) as typeof process.stdout.write)
    try {
      const code = await main(['run', COW, '--timeout', '1', '--json'], pool)
      vi.restoreAllMocks()
      expect(code).toBe(0)
      const run = (JSON.parse(out) as { run: RunResult }).run
      expect(run.results.map((r) => r.verdict)).toEqual(['unknown', 'unknown', 'unknown'])
      for (const r of run.results) expect(r.stats.cutReason).toBe('time budget of 1 s reached')
      // The queued one began after the deadline: it stopped at its first check.
      expect(Math.min(...run.results.map((r) => r.stats.states))).toBeLessThan(2_000)
    } finally {
      vi.restoreAllMocks()
      await pool.close()
    }
  }, 60_000)

  it('the reference-schedule run that measures the metrics stops at the budget too', async () => {
    // Big enough that exploring outlasts the budget, and a reference run of 900 steps after it.
    const ops = (p: string) => Array.from({ length: 300 }, () => `write ${p} 1`).join(', ')
    const file = writeScenario(
      'long.yaml',
      [
        'title: two long threads and a device',
        'arch: x86_64',
        'pages:',
        '  A: { value: 0, prot: rw }',
        '  B: { value: 0, prot: rw }',
        'secondary:',
        '  - { name: iommu, type: hw-walker }',
        'cpus:',
        `  C0: [${ops('A')}]`,
        `  C1: [${ops('B')}]`,
        'devices:',
        '  D0: { via: iommu, ops: [read A -> r0, read B -> r1, read A -> r2] }',
        '',
      ].join('\n'),
    )
    const r = await mnlab('run', file, '--policy', 'arch-hook', '--timeout', '1', '--json')
    expect(r.code).toBe(0)
    const res = (JSON.parse(r.stdout) as { run: RunResult }).run.results[0]!
    expect(res.verdict).toBe('unknown')
    expect(res.stats.cutReason).toBe('time budget of 1 s reached')
    expect(res.metricsSchedule).toMatch(/\(ended: cut\)$/)
  }, 60_000)
})

describe('--max-memory: the memory budget', () => {
  it('a run over its memory budget stops with unknown and says so; every run reports its peak', async () => {
    const cow = fileURLToPath(new URL('../../scenarios/cow-ordering.flush-at-end.yaml', import.meta.url))
    const r = await mnlab('run', cow, '--policy', 'arch-hook', '--max-memory', '1', '--json')
    expect(r.code).toBe(0)
    const res = (JSON.parse(r.stdout) as { run: RunResult }).run.results[0]!
    expect(res.verdict).toBe('unknown')
    expect(res.stats.cutReason).toBe('memory budget of 1 MB reached')
    const ok = await mnlab('run', UPGRADE, '--policy', 'arch-hook', '--json')
    const fine = (JSON.parse(ok.stdout) as { run: RunResult }).run.results[0]!
    expect(fine.verdict).toBe('holds')
    expect(fine.stats.peakMemoryMb).toBeGreaterThan(1)
    const bad = await mnlab('run', UPGRADE, '--max-memory', 'lots')
    expect(bad.code).toBe(2)
    expect(bad.stderr.split('\n')[0]).toBe("mnlab: --max-memory takes a non-negative integer, got 'lots'")
  }, 60_000)
})

describe('one schedule under several policies (replay --policy all|a,b)', () => {
  const COW = fileURLToPath(
    new URL('../../scenarios/cow-ordering.invalidate-range-needed.yaml', import.meta.url),
  )
  const FORK = fileURLToPath(new URL('../../scenarios/fork-isolation.flush-at-start.yaml', import.meta.url))
  // The shortest start-end counterexample (--bfs) of the COW race.
  const CX = 'C0 C0 C0 C0 C1 D1 C0 C0 C1 C1 C1 C1 C1 C1 C2 C2 D0 D0 C0'

  it("prints each policy's trace, its outcome and why, the holding ones included", async () => {
    const r = await mnlab('replay', COW, '--policy', 'all', '--schedule', CX)
    expect(r.code).toBe(0)
    for (const p of ['start-end', 'invalidate-range', 'arch-hook'])
      expect(r.stdout).toMatch(new RegExp(`^== ${p}: `, 'm'))
    expect(r.stdout).toMatch(/^== start-end: violated forbid ==$/m)
    expect(r.stdout).toMatch(/^== arch-hook: holds on this schedule ==$/m)
    // Each trace is printed: three outcomes, three sets of registers.
    expect(r.stdout.match(/^outcome: /gm)).toHaveLength(3)
    expect(r.stdout).toMatch(
      /^start-end\s+violated forbid; ran 19 steps, skipped 0\n {2}why: r1 == 1 && r0 == 0/m,
    )
    expect(r.stdout).toMatch(/^arch-hook\s+holds on this schedule; ran 19 steps, skipped 0$/m)
    // One hint line per holding policy, each naming its hook and its caller.
    expect(unwrap(r.stdout)).toMatch(
      /^hint \(invalidate-range\): under invalidate-range, mmu_notifier_invalidate_range \(ptep_clear_flush_notify, step \d+\)/m,
    )
    expect(unwrap(r.stdout)).toMatch(
      /^hint \(arch-hook\): under arch-hook, mmu_notifier_arch_invalidate_secondary_tlbs \(ptep_clear_flush, step \d+\)/m,
    )
    expect(r.stdout).not.toMatch(/^hint: /m)
    expect(r.stdout.match(/^hint \(/gm)).toHaveLength(2)
    const j = await mnlab('replay', COW, '--policy', 'all', '--schedule', CX, '--json')
    const res = JSON.parse(j.stdout) as CompareResult
    expect(res.hints.map((h) => h.policy)).toEqual(['invalidate-range', 'arch-hook'])
    expect(res.hint).toBe(res.hints[0]!.text)
  })

  it("a blocked or finished thread's entry is skipped and the output says why; --json has the CompareResult", async () => {
    // C1 is the fork child: it cannot run before fork returns, and C0 finishes after its one op.
    const r = await mnlab(
      'replay',
      FORK,
      '--policy',
      'start-end,arch-hook',
      '--schedule',
      'C1 C0 C0 C0 C0 C0 C0 C0 C0 C0 C0 C0 C0 C0 C0 C0 C0 C0 C0 C0 C0 C0 C0 C0 C0 C0 C0 C0 C0 C0 C0 C0 C0 C0 C0 C0 C0 C0 C0 C0',
    )
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^ {2}skipped entry 0 \(C1\): waiting for fork to return$/m)
    expect(r.stdout).toMatch(/^ {2}skipped entries \d+-39 \(C0\): finished$/m)
    const j = await mnlab('replay', FORK, '--policy', 'start-end,arch-hook', '--schedule', 'C1 C0', '--json')
    expect(j.code).toBe(0)
    const res = JSON.parse(j.stdout) as CompareResult
    expect(res.schedule).toEqual(['C1', 'C0'])
    expect(res.replays.map((x) => x.policy)).toEqual(['start-end', 'arch-hook'])
    for (const x of res.replays) {
      expect(x.skipped[0]).toEqual({ index: 0, thread: 'C1', reason: 'waiting for fork to return' })
      expect(x.positions[0]).toBe(1)
      expect(x.positions).toHaveLength(x.records.length)
      expect(x.ran[0]).toBe('C0')
      expect(x.why.length).toBeGreaterThan(5)
    }
  })

  it('one policy keeps the strict replay; an unknown policy or thread is exit 2', async () => {
    const one = await mnlab('replay', COW, '--policy', 'arch-hook', '--schedule', CX)
    expect(one.stdout).toMatch(/^policy arch-hook, schedule of 19 steps, then the reference schedule$/m)
    expect(one.stdout).not.toMatch(/^== /m)
    const bad = await mnlab('replay', COW, '--policy', 'start-end,nope', '--schedule', CX)
    expect(bad.code).toBe(2)
    const badThread = await mnlab('replay', COW, '--policy', 'all', '--schedule', 'C0 X9')
    expect(badThread.code).toBe(2)
    expect(badThread.stderr.split('\n')[0]).toMatch(/^mnlab: schedule step 1: unknown thread 'X9'/)
  })
})

describe('mnlab distinguish', () => {
  const COW = fileURLToPath(
    new URL('../../scenarios/cow-ordering.invalidate-range-needed.yaml', import.meta.url),
  )
  const MUNMAP = fileURLToPath(new URL('../../scenarios/munmap-uaf.flush-at-start.yaml', import.meta.url))

  it('COW example, start-end vs arch-hook: a pasteable schedule, both outcomes, the first difference; replaying it agrees', async () => {
    const r = await mnlab('distinguish', COW, '--policies', 'start-end,arch-hook')
    expect(r.code).toBe(0)
    const m = /^schedule \((\d+) entries, then the reference schedule\): (.+)$/m.exec(r.stdout)
    expect(m).not.toBeNull()
    const schedule = m![2]!
    expect(schedule.split(' ')).toHaveLength(Number(m![1]))
    expect(r.stdout).toMatch(/^start-end: violated forbid\n {2}why: /m)
    expect(r.stdout).toMatch(/^arch-hook: holds on this schedule$/m)
    expect(r.stdout).toMatch(/^first difference: aligned row \d+ \(schedule entry \d+; differs in /m)
    expect(r.stdout).toContain(`--policy start-end,arch-hook --schedule "${schedule}"`)
    expect(unwrap(r.stdout)).toMatch(
      /^hint: under arch-hook, mmu_notifier_arch_invalidate_secondary_tlbs \(ptep_clear_flush, step \d+\) invalidated A's iommu TLB entry/m,
    )
    // Pasted into replay: the same two outcomes.
    const rp = await mnlab('replay', COW, '--policy', 'start-end,arch-hook', '--schedule', schedule)
    expect(rp.stdout).toMatch(/^== start-end: violated forbid ==$/m)
    expect(rp.stdout).toMatch(/^== arch-hook: holds on this schedule ==$/m)
  }, 120_000)

  it('--json: the DistinguishResult; policies that agree: complete, no schedule, exit 0', async () => {
    const r = await mnlab('distinguish', MUNMAP, '--policies', 'start-end,arch-hook', '--json')
    expect(r.code).toBe(0)
    const d = JSON.parse(r.stdout) as DistinguishResult
    expect(d.policies).toEqual(['start-end', 'arch-hook'])
    expect(d.schedule).not.toBeNull()
    expect(d.replays).toHaveLength(2)
    expect(d.replays[0]!.violations.length > 0).not.toBe(d.replays[1]!.violations.length > 0)
    expect(d.firstDifference).not.toBeNull()
    expect(d.hint).toMatch(/^under arch-hook, /)
    const same = await mnlab('distinguish', MUNMAP, '--policies', 'invalidate-range,arch-hook')
    expect(same.code).toBe(0)
    expect(same.stdout).toMatch(
      /^distinguish invalidate-range vs arch-hook: no schedule distinguishes them: all \d+ reachable state pairs/m,
    )
  })

  it('a budget that runs out is exit 4, saying how far it got; bad input is exit 2', async () => {
    const r = await mnlab('distinguish', COW, '--policies', 'start-end,arch-hook', '--max-states', '200')
    expect(r.code).toBe(EXIT_BUDGET)
    expect(EXIT_BUDGET).toBe(4)
    expect(r.stdout).toMatch(
      /stopped at the state budget after 200 state pairs: no schedule of \d+ entries or fewer/,
    )
    const tiny = await mnlab('distinguish', COW, '--policies', 'start-end,arch-hook', '--max-states', '7')
    expect(tiny.code).toBe(EXIT_BUDGET)
    expect(tiny.stdout).toContain('no schedule of 1 entry or fewer distinguishes them')
    for (const args of [
      ['--policies', 'start-end'],
      ['--policies', 'start-end,nope'],
      ['--policies', 'all,arch-hook'],
      [],
    ]) {
      const bad = await mnlab('distinguish', COW, ...args)
      expect(bad.code, args.join(' ')).toBe(2)
      expect(bad.stderr).toMatch(/^mnlab: /)
    }
  })
})
