/**
 * `mnlab synthesize`: its output (text and JSON), its errors (exit 2, one line), a budget that
 * leaves verdicts unknown (exit 4) and Ctrl+C (the explorations stop, exit 130).
 */
import { spawn, spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import type { SynthesisResult } from '../engine'
import { EXIT_BUDGET, EXIT_CANCELLED } from './cli'
import { mnlab } from './cliTestkit'

const ROOT = path.join(__dirname, '../..')
const S = (f: string): string => path.join(ROOT, 'scenarios', f)
const UPGRADE = S('upgrade-loop.smmu-no-btm.yaml')
const MUNMAP = S('munmap-uaf.flush-at-start.yaml')

let dir = ''
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'mnlab-synth-cli-'))
})
afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true })
})
afterEach(() => {
  vi.restoreAllMocks()
})

describe('mnlab synthesize', () => {
  it('prints the minimal placements with certificates, the presets side by side, the front and the search cost', async () => {
    const r = await mnlab('synthesize', MUNMAP, UPGRADE, '--jobs', '2')
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    expect(r.stdout).toMatch(/^synthesize: 2 scenarios, 16 candidate sites, objective sim_ns$/m)
    expect(r.stdout).toMatch(
      /^ {2}\[1\] +munmap-uaf\.flush-at-start\.yaml +holds +invalidate_range_start range_end/m,
    )
    expect(r.stdout).toMatch(/^ {2}1\. sites:\S+ +sim_ns [\d,]+$/m)
    expect(r.stdout).toMatch(
      /^ {5}needs flush_tlb_page: without it \[2\] upgrade-loop\.smmu-no-btm\.yaml is violated \(progress\)$/m,
    )
    expect(r.stdout).toMatch(/^ {5}never reached \(no run asked about them\): .*flush_tlb_kernel_range/m)
    expect(r.stdout).toMatch(/^ {2}start-end +0\/2 /m)
    expect(r.stdout).toMatch(/^ {2}arch-hook +2\/2 /m)
    expect(r.stdout).toMatch(/^Pareto front/m)
    expect(r.stdout).toMatch(
      /^search: 2 scenarios x 65,536 placements = 131,072 pairs; \d+ within each scenario's reached sites; \d+ explored \([\d,]+ states\), \d+ pruned by monotonicity \(\d+ holds, \d+ violated\), \d+ reference runs for costs; [\d.]+ s on 2 workers$/m,
    )
  }, 120_000)

  it('--json is the SynthesisResult; --sites, --objective and --policy shape it', async () => {
    const r = await mnlab(
      'synthesize',
      UPGRADE,
      '--sites',
      'wp_page_reuse,flush_tlb_page,iommu_page_response',
      '--objective',
      'secondary_invalidations',
      '--policy',
      'sites:flush_tlb_page,iommu_page_response',
      '--json',
    )
    expect(r.code).toBe(0)
    const res = JSON.parse(r.stdout) as SynthesisResult
    expect(res.settings).toEqual({
      objective: 'secondary_invalidations',
      candidates: ['flush_tlb_page', 'wp_page_reuse', 'iommu_page_response'],
      maxStates: 2_000_000,
    })
    expect(res.minimal.map((m) => m.placement.name)).toEqual([
      'sites:flush_tlb_page',
      'sites:iommu_page_response',
    ])
    expect(res.placements.map((p) => p.name)).toEqual([
      'start-end',
      'invalidate-range',
      'arch-hook',
      'sites:flush_tlb_page+iommu_page_response',
    ])
    const need = res.minimal[0]!.needed[0]!
    expect(need.counterexample.replay).toBe(
      `mnlab replay ${UPGRADE} --policy sites: --schedule "${[...need.counterexample.schedule, ...(need.counterexample.cycle ?? [])].join(' ')}"`,
    )
    expect(res.minimal[0]!.leftOut.find((l) => l.site === 'ptep_set_access_flags')?.evidence).toBe(
      'not-candidate',
    )
    expect(res.complete).toBe(true)
  }, 120_000)

  it('the printed certificate replays: the placement without the site violates on that schedule', async () => {
    const r = await mnlab('synthesize', UPGRADE, '--sites', 'flush_tlb_page', '--json')
    const res = JSON.parse(r.stdout) as SynthesisResult
    const cmd = res.minimal[0]!.needed[0]!.counterexample.replay!
    const m = /^mnlab replay (\S+) --policy (\S+) --schedule "(.*)"$/.exec(cmd)!
    const replay = await mnlab('replay', m[1]!, '--policy', m[2]!, '--schedule', m[3]!)
    expect(replay.code).toBe(0)
    expect(replay.stdout).toMatch(/^violation: progress at step \d+/m)
  }, 120_000)

  it('bad input: one line on stderr, exit 2, before anything runs', async () => {
    const empty = path.join(dir, 'empty')
    mkdirSync(empty, { recursive: true })
    const bad = path.join(dir, 'bad.yaml')
    writeFileSync(bad, readFileSync(UPGRADE, 'utf8').replace('[write_fault P]', '[write_fault Z]'))
    const cases: Array<[string[], RegExp]> = [
      [[], /^mnlab: mnlab synthesize needs at least one scenario file or folder$/m],
      [
        [UPGRADE, '--sites', 'flush_tlb_rang'],
        /^mnlab: unknown site 'flush_tlb_rang'; sites: invalidate_range_start, /m,
      ],
      [[UPGRADE, '--sites', 'flush_tlb_page,flush_tlb_page'], /^mnlab: site 'flush_tlb_page' given twice$/m],
      [
        [UPGRADE, '--objective', 'speed'],
        /^mnlab: unknown objective 'speed'; expected sim_ns or secondary_invalidations$/m,
      ],
      [
        [UPGRADE, '--policy', 'arch-hok'],
        /^mnlab: unknown policy 'arch-hok' \(did you mean 'arch-hook'\?\)/m,
      ],
      [[UPGRADE, '--jobs', '0'], /^mnlab: --jobs must be at least 1$/m],
      [[UPGRADE, '--jobs', 'x'], /^mnlab: --jobs takes a non-negative integer, got 'x'$/m],
      [[path.join(dir, 'missing.yaml')], /missing\.yaml:1:1: no such file or directory/],
      [[empty], /^mnlab: no scenario files \(\*\.yaml\) in .*empty$/m],
      [[bad], new RegExp(`^${bad.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:9:\\d+: unknown page 'Z'`, 'm')],
    ]
    for (const [args, msg] of cases) {
      const r = await mnlab('synthesize', ...args)
      expect(r.code, args.join(' ')).toBe(2)
      expect(r.stdout).toBe('')
      expect(r.stderr).toMatch(msg)
    }
  }, 60_000)

  it('a budget that leaves a verdict unknown: the answer is marked incomplete, exit 4', async () => {
    const r = await mnlab('synthesize', S('cow-ordering.flush-at-end.yaml'), '--max-states', '50')
    expect(r.code).toBe(EXIT_BUDGET)
    expect(r.stdout).toMatch(/^note: \d+ scenario x placement pairs? undecided/m)
    expect(r.stdout).toMatch(/^incomplete: the minimal placements are not proven \(exit 4\)$/m)
    expect(r.stdout).toMatch(/^ {2}\[1\] +cow-ordering\.flush-at-end\.yaml +unknown /m)
  }, 120_000)

  it('Ctrl+C cancels: the workers stop, one line on stderr, exit 130', async () => {
    // The launcher rebuilds the bundle when the sources changed: first, so the timing below is the search's.
    expect(spawnSync(process.execPath, [path.join(ROOT, 'bin/mnlab.cjs'), '--version']).status).toBe(0)
    const child = spawn(
      process.execPath,
      [
        path.join(ROOT, 'bin/mnlab.cjs'),
        'synthesize',
        S('cow-ordering.invalidate-range-needed.yaml'),
        '--jobs',
        '1',
      ],
      { cwd: ROOT },
    )
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    // Once it explores (start-up takes a tenth of a second), interrupt it.
    await new Promise((r) => setTimeout(r, 1500))
    const started = Date.now()
    child.kill('SIGINT')
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)))
    expect(code).toBe(EXIT_CANCELLED)
    expect(stderr).toBe('mnlab: synthesize cancelled\n')
    expect(stdout).toBe('')
    // The running exploration (a worker thread) is terminated, not waited for.
    expect(Date.now() - started).toBeLessThan(3000)
  }, 60_000)
})
