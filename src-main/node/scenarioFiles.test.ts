import { readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { CPU_OPS, KERNEL_KEYS } from '../engine/scenario'
import {
  formatIssue,
  loadScenarioFile,
  loadScenarioText,
  ScenarioLoadError,
  type LocatedIssue,
} from './scenarioFiles'

const SCENARIOS = fileURLToPath(new URL('../../scenarios/', import.meta.url))

/**
 * A valid scenario, one top-level section per entry so a test can replace one section.
 * With no overrides the lines are:
 *  1 title: t
 *  2 arch: arm64
 *  3 pages:
 *  4   P: { value: 0, prot: rw, mapped: ro }
 *  5   Q: { value: 0 }
 *  6 secondary:
 *  7   - { name: smmu, type: hw-walker, btm: false, cached: [P] }
 *  8 cpus:
 *  9   C0: [write_fault P]
 * 10 devices:
 * 11   D0: { via: smmu, ops: [write P 7] }
 * 12 expect: { start-end: violated }
 */
function scenario(over: Record<string, string> = {}, extra = ''): string {
  const sections: Record<string, string> = {
    title: 'title: t',
    arch: 'arch: arm64',
    pages: 'pages:\n  P: { value: 0, prot: rw, mapped: ro }\n  Q: { value: 0 }',
    secondary: 'secondary:\n  - { name: smmu, type: hw-walker, btm: false, cached: [P] }',
    cpus: 'cpus:\n  C0: [write_fault P]',
    devices: 'devices:\n  D0: { via: smmu, ops: [write P 7] }',
    expect: 'expect: { start-end: violated }',
    ...over,
  }
  return (
    Object.values(sections)
      .filter((s) => s !== '')
      .join('\n') +
    '\n' +
    extra
  )
}

function issuesOf(text: string): LocatedIssue[] {
  try {
    loadScenarioText(text, 'x.yaml')
  } catch (e) {
    if (e instanceof ScenarioLoadError) return [...e.issues]
    throw e
  }
  throw new Error('expected the scenario to be rejected')
}

/** The only issue, as `line:column length message`. */
function only(text: string): string {
  const list = issuesOf(text)
  expect(list.map(fmt)).toHaveLength(1)
  return fmt(list[0]!)
}
const fmt = (i: LocatedIssue): string => `${i.line}:${i.column} len${i.length} ${i.message}`

describe('loadScenarioText: valid input', () => {
  it('the base scenario used by these tests is valid', () => {
    const sc = loadScenarioText(scenario(), 'x.yaml')
    expect(sc.title).toBe('t')
    expect(sc.arch).toBe('arm64')
    expect(sc.pages.map((p) => [p.name, p.mapped])).toEqual([
      ['P', 'ro'],
      ['Q', 'rw'],
    ])
    expect(sc.threads.map((t) => [t.name, t.kind, t.via])).toEqual([
      ['C0', 'cpu', -1],
      ['D0', 'device', 0],
    ])
    expect(sc.expect).toEqual([['start-end', 'violated']])
  })

  it('loads scenarios/upgrade-loop.smmu-no-btm.yaml', () => {
    const sc = loadScenarioFile(path.join(SCENARIOS, 'upgrade-loop.smmu-no-btm.yaml'))
    expect(sc.arch).toBe('arm64')
    expect(sc.threads.map((t) => t.name)).toEqual(['C0', 'D0'])
    expect(sc.pages).toHaveLength(1)
    expect(sc.pages[0]).toMatchObject({ name: 'P', prot: 'rw', mapped: 'ro', cow: false })
    expect(sc.registers).toEqual([])
    expect(sc.secondaries).toHaveLength(1)
    expect(sc.secondaries[0]).toMatchObject({ name: 'smmu', type: 'hw-walker', btm: false, cached: [0] })
    expect(sc.forbid).toBeNull()
    expect(sc.expect).toEqual([
      ['start-end', 'violated'],
      ['invalidate-range', 'violated'],
      ['arch-hook', 'holds'],
    ])
  })

  it('loads scenarios/cow-ordering.invalidate-range-needed.yaml', () => {
    const sc = loadScenarioFile(path.join(SCENARIOS, 'cow-ordering.invalidate-range-needed.yaml'))
    expect(sc.arch).toBe('x86_64')
    expect(sc.threads.map((t) => t.name)).toEqual(['C0', 'C1', 'C2', 'D0', 'D1'])
    expect(sc.threads.filter((t) => t.kind === 'device')).toHaveLength(2)
    expect(sc.pages.map((p) => p.name)).toEqual(['A', 'B'])
    expect(sc.pages.every((p) => p.cow && p.mapped === 'ro')).toBe(true)
    expect(sc.registers).toEqual(['r1', 'r0', 'r2'])
    expect(sc.forbidText).toBe('r1 == 1 && r0 == 0')
    expect(sc.forbid).not.toBeNull()
    expect(sc.expect.map(([p]) => p)).toEqual(['start-end', 'invalidate-range', 'arch-hook'])
  })

  it('every catalogue scenario has a title, a source, expect for the three presets, and a README paragraph', () => {
    const files = readdirSync(SCENARIOS).filter((f) => f.endsWith('.yaml'))
    expect(files).toContain('cow-ordering.invalidate-range-needed.yaml')
    expect(files).toContain('upgrade-loop.smmu-no-btm.yaml')
    const readme = readFileSync(path.join(SCENARIOS, 'README.md'), 'utf8')
    for (const f of files) {
      const sc = loadScenarioFile(path.join(SCENARIOS, f))
      expect(sc.source, f).toBeTruthy()
      expect(
        sc.expect.map(([p]) => p),
        f,
      ).toEqual(expect.arrayContaining(['start-end', 'invalidate-range', 'arch-hook']))
      expect(readme, `scenarios/README.md describes ${f}`).toContain(`\`${f}\``)
    }
  })
})

describe('loadScenarioText: errors located at file:line:column', () => {
  it('formats an issue as file:line:col: message and puts all of them in the error message', () => {
    let err: unknown
    try {
      loadScenarioText(scenario({ arch: 'arch: arm65' }), 'dir/x.yaml')
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(ScenarioLoadError)
    const e = err as ScenarioLoadError
    expect(e.issues[0]!.file).toBe('dir/x.yaml')
    expect(formatIssue(e.issues[0]!)).toBe(
      `dir/x.yaml:2:7: arch must be one of x86_64, arm64; found string "arm65" (did you mean 'arm64'?)`,
    )
    expect(e.message).toBe(formatIssue(e.issues[0]!))
  })

  it('YAML aliases are refused at their position, never thrown from the yaml package (issue 11)', () => {
    const issuesOf = (text: string): string[] => {
      try {
        loadScenarioText(text, 'a.yaml')
      } catch (e) {
        expect(e).toBeInstanceOf(ScenarioLoadError)
        return (e as ScenarioLoadError).issues.map(formatIssue)
      }
      throw new Error('loaded')
    }
    // An alias to nothing: the yaml package threw a ReferenceError from toJS().
    expect(issuesOf('*nope\n')).toEqual([
      'a.yaml:1:1: YAML: aliases are not supported in scenarios (found *nope); write the value out',
    ])
    // A "billion laughs" never gets expanded: every alias is reported where it stands.
    const laughs = issuesOf('a: &a [x, x, x, x]\nb: &b [*a, *a, *a]\nc: [*b, *b]\n')
    expect(laughs).toHaveLength(5)
    expect(laughs[0]).toBe(
      'a.yaml:2:8: YAML: aliases are not supported in scenarios (found *a); write the value out',
    )
    expect(laughs[4]).toBe(
      'a.yaml:3:9: YAML: aliases are not supported in scenarios (found *b); write the value out',
    )
  })

  // Positions of YAML-level errors are not asserted: see the report (they are always 1:1).
  it('YAML syntax error', () => {
    const list = issuesOf('title: t\narch: [arm64\npages: {}\n')
    expect(list).toHaveLength(1)
    expect(list[0]!.file).toBe('x.yaml')
    expect(list[0]!.message).toBe(
      'YAML: Flow sequence in block collection must be sufficiently indented and end with a ]',
    )
  })

  it('duplicate keys in YAML', () => {
    expect(issuesOf(scenario({}, 'title: again\n')).map((i) => i.message)).toEqual([
      "YAML: key 'title' is given twice in this mapping (first on line 1)",
    ])
    expect(
      issuesOf(scenario({ pages: 'pages:\n  P: { value: 0, value: 1 }' })).map((i) => [i.column, i.message]),
    ).toEqual([[18, "YAML: key 'value' is given twice in this mapping (first on line 4)"]])
  })

  it('unknown top-level key, with did-you-mean, at the key', () => {
    expect(only(scenario({}, 'secondry: []\n'))).toBe(
      "13:1 len8 unknown key 'secondry' in the scenario (did you mean 'secondary'?); allowed: title, source, notes, arch, pages, secondary, cpus, devices, forbid, policies, expect, mmu_gather, explore, costs, kernel, kernel_pages, expect_metrics, thp",
    )
  })

  it('unknown key with nothing close gets no did-you-mean', () => {
    expect(only(scenario({}, 'zzzzzzzzzz: 1\n'))).toBe(
      "13:1 len10 unknown key 'zzzzzzzzzz' in the scenario; allowed: title, source, notes, arch, pages, secondary, cpus, devices, forbid, policies, expect, mmu_gather, explore, costs, kernel, kernel_pages, expect_metrics, thp",
    )
  })

  it('missing title: at the start of the document', () => {
    const list = issuesOf(scenario({ title: '' }))
    expect(list).toHaveLength(1)
    expect(list[0]).toMatchObject({
      line: 1,
      column: 1,
      message: 'title is required: one line saying what the scenario shows; found nothing',
    })
  })

  it('empty title: at the value', () => {
    expect(only(scenario({ title: "title: ''" }))).toBe(
      '1:8 len2 title is required: one line saying what the scenario shows; found string ""',
    )
    expect(only(scenario({ title: 'title:' }))).toBe(
      '1:7 len1 title is required: one line saying what the scenario shows; found nothing',
    )
  })

  it('bad arch: at the value, with did-you-mean', () => {
    expect(only(scenario({ arch: 'arch: arm65' }))).toBe(
      `2:7 len5 arch must be one of x86_64, arm64; found string "arm65" (did you mean 'arm64'?)`,
    )
  })

  it('missing arch', () => {
    expect(issuesOf(scenario({ arch: '' })).map((i) => i.message)).toEqual([
      'arch is required: x86_64 or arm64',
    ])
  })

  it('unknown page in an op string inside a flow sequence: column at the page name', () => {
    //                                            C0: [cow_fault Z]
    //                                            123456789012345678
    expect(only(scenario({ cpus: 'cpus:\n  C0: [cow_fault Z]' }))).toBe(
      "9:18 len1 unknown page 'Z' (did you mean 'P'?); pages are P, Q",
    )
  })

  it('unknown page in a second op, a quoted op and a block-sequence op', () => {
    expect(only(scenario({ cpus: 'cpus:\n  C0: [write_fault P, read Zed -> r0]' }))).toBe(
      "9:28 len3 unknown page 'Zed'; pages are P, Q",
    )
    expect(only(scenario({ cpus: 'cpus:\n  C0: ["write_fault P", "cow_fault Z"]' }))).toBe(
      "9:36 len1 unknown page 'Z' (did you mean 'P'?); pages are P, Q",
    )
    expect(only(scenario({ cpus: "cpus:\n  C0: ['cow_fault  Z']" }))).toBe(
      "9:20 len1 unknown page 'Z' (did you mean 'P'?); pages are P, Q",
    )
    expect(only(scenario({ cpus: 'cpus:\n  C0:\n    - write_fault P\n    - cow_fault  Z' }))).toBe(
      "11:18 len1 unknown page 'Z' (did you mean 'P'?); pages are P, Q",
    )
  })

  it('unknown page inside a device op', () => {
    expect(only(scenario({ devices: 'devices:\n  D0: { via: smmu, ops: [write X 7] }' }))).toBe(
      "11:32 len1 unknown page 'X' (did you mean 'P'?); pages are P, Q",
    )
  })

  it('unknown op: column at the op word', () => {
    expect(only(scenario({ cpus: 'cpus:\n  C0: [write_fault P, frobnicate P]' }))).toBe(
      `9:23 len10 unknown cpu op 'frobnicate'; expected one of ${CPU_OPS.join(', ')}`,
    )
  })

  it('misspelt op gets did-you-mean', () => {
    expect(only(scenario({ cpus: 'cpus:\n  C0: [write_falt P]' }))).toBe(
      `9:8 len10 unknown cpu op 'write_falt' (did you mean 'write_fault'?); expected one of ${CPU_OPS.join(', ')}`,
    )
  })

  it('a device doing a CPU-only op', () => {
    expect(only(scenario({ devices: 'devices:\n  D0: { via: smmu, ops: [munmap P] }' }))).toBe(
      "11:26 len6 unknown device op 'munmap' (devices do DMA reads and writes and ATS translation requests); expected one of read, write, signal, wait, translate",
    )
  })

  it('write without a value: at the end of the op', () => {
    expect(only(scenario({ cpus: 'cpus:\n  C0: [write P]' }))).toBe(
      "9:15 len1 write needs an integer value from -2147483648 to 2147483647 after the page, as in 'write A 1'",
    )
  })

  it('write with a non-integer value: at the value', () => {
    expect(only(scenario({ cpus: 'cpus:\n  C0: [write P one]' }))).toBe(
      "9:16 len3 write needs an integer value from -2147483648 to 2147483647 after the page, as in 'write A 1'",
    )
  })

  it('a register written twice: at the second writer', () => {
    expect(only(scenario({ cpus: 'cpus:\n  C0: [read P -> r0]\n  C1: [read Q -> r0]' }))).toBe(
      "10:18 len2 register 'r0' is already written by C0; each register is written once",
    )
  })

  it('read with something other than -> after the page', () => {
    expect(only(scenario({ cpus: 'cpus:\n  C0: [read P r1]' }))).toBe(
      "9:15 len2 expected '-> register' after the page, found 'r1'",
    )
  })

  it('forbid referencing an unknown register: column inside the forbid string', () => {
    const cpus = { cpus: 'cpus:\n  C0: [read P -> r1]' }
    // plain scalar: 'forbid: ' is 8 columns, 'R1' starts at offset 11
    expect(only(scenario(cpus, 'forbid: r1 == 1 && R1 == 0\n'))).toBe(
      "13:20 len2 unknown register 'R1': no read in this scenario writes it (names are case-sensitive)",
    )
    // quoted scalars: one more column for the quote
    expect(only(scenario(cpus, "forbid: 'r1 == 1 && R1 == 0'\n"))).toBe(
      "13:21 len2 unknown register 'R1': no read in this scenario writes it (names are case-sensitive)",
    )
    expect(only(scenario(cpus, 'forbid: "r1 == 1 && R1 == 0"\n'))).toBe(
      "13:21 len2 unknown register 'R1': no read in this scenario writes it (names are case-sensitive)",
    )
  })

  it('forbid with = and with an unknown page in mem()', () => {
    const cpus = { cpus: 'cpus:\n  C0: [read P -> r1]' }
    expect(only(scenario(cpus, 'forbid: r1 = 1   # comment\n'))).toBe(
      "13:12 len1 '=' is not a comparison; use '=='",
    )
    expect(only(scenario(cpus, 'forbid: mem(Z) == 1\n'))).toBe("13:13 len1 unknown page 'Z' in mem(...)")
  })

  it('a folded multi-line forbid falls back to the start of the value', () => {
    const cpus = { cpus: 'cpus:\n  C0: [read P -> r1]' }
    const list = issuesOf(scenario(cpus, 'forbid: >-\n  r1 == 1 &&\n  R1 == 0\n'))
    expect(list.map((i) => [i.line, i.column, i.message])).toEqual([
      [13, 9, "unknown register 'R1': no read in this scenario writes it (names are case-sensitive)"],
    ])
  })

  it('expect with an unknown policy: at the key', () => {
    expect(only(scenario({ expect: 'expect: { start-ends: violated }' }))).toBe(
      "12:11 len10 unknown policy 'start-ends' (did you mean 'start-end'?); expected start-end, invalidate-range, arch-hook or sites:a,b",
    )
    expect(only(scenario({ expect: 'expect: { start-end+frob: violated }' }))).toBe(
      "12:11 len14 unknown policy variant 'frob'; expected one of upgrade-notify, access-flags-notify, pri-flush, kernel-notifier",
    )
  })

  it('expect with a bad verdict: at the value', () => {
    expect(only(scenario({ expect: 'expect: { start-end: violatd }' }))).toBe(
      `12:22 len7 an expectation must be one of holds, violated, use-after-free, stale-after-return, lost-write, lost-dirty, progress, forbid; found string "violatd" (did you mean 'violated'?)`,
    )
  })

  it('expect with an exact set of violated invariants: parsed, and its errors located', () => {
    const sc = loadScenarioText(
      scenario({
        expect: 'expect: { start-end: { violated: [use-after-free, lost-write] }, arch-hook: holds }',
      }),
      'x.yaml',
    )
    expect(sc.expect).toEqual([
      ['start-end', { violated: ['use-after-free', 'lost-write'] }],
      ['arch-hook', 'holds'],
    ])
    expect(
      only(scenario({ expect: 'expect: { start-end: { violated: [use-after-free, lost-wirte] } }' })),
    ).toBe(
      `12:51 len10 an invariant must be one of use-after-free, stale-after-return, lost-write, lost-dirty, progress, forbid; found string "lost-wirte" (did you mean 'lost-write'?)`,
    )
    expect(only(scenario({ expect: 'expect: { start-end: { violated: [] } }' }))).toMatch(
      /^12:34 len2 violated must list the invariants that break.*found an empty list$/,
    )
    expect(only(scenario({ expect: 'expect: { start-end: { violatd: [lost-write] } }' }))).toMatch(
      /^12:24 len7 unknown key 'violatd' in an exact expectation \(did you mean 'violated'\?\)/,
    )
    expect(only(scenario({ expect: 'expect: { start-end: [lost-write] }' }))).toBe(
      '12:22 len12 an exact set of violated invariants is written { violated: [lost-write] }; found a list',
    )
    expect(only(scenario({ expect: 'expect: { start-end: { violated: [lost-write, lost-write] } }' }))).toBe(
      '12:47 len10 lost-write is listed twice',
    )
    expect(only(scenario({ expect: 'expect: { start-end: { violated: [forbid] } }' }))).toBe(
      "12:22 len22 expecting 'forbid' needs a forbid condition",
    )
  })

  it("expect 'forbid' without a forbid condition", () => {
    expect(only(scenario({ expect: 'expect: { start-end: forbid }' }))).toBe(
      "12:22 len6 expecting 'forbid' needs a forbid condition",
    )
  })

  it('cow: true with mapped: rw: at the mapped value', () => {
    // W is not referenced elsewhere (see the report for what happens when it is).
    const pages =
      'pages:\n  P: { value: 0, prot: rw, mapped: ro }\n  W: { value: 0, prot: rw, cow: true, mapped: rw }'
    expect(only(scenario({ pages }))).toBe(
      '5:47 len2 cow: true pages are mapped read-only (mapped: ro) in the process and its fork child',
    )
  })

  it('btm: true on x86_64: at the btm value', () => {
    expect(
      only(
        scenario({
          arch: 'arch: x86_64',
          secondary: 'secondary:\n  - { name: smmu, type: hw-walker, btm: true, cached: [P] }',
        }),
      ),
    ).toBe('7:41 len4 btm (broadcast TLB maintenance snooped by an SMMU) exists only on arm64')
  })

  it('unknown secondary in via: at the value', () => {
    expect(only(scenario({ devices: 'devices:\n  D0: { via: smu, ops: [write P 7] }' }))).toBe(
      '11:14 len3 via must name a secondary (smmu); found string "smu"',
    )
  })

  it('cached listing an unknown page: at the list item', () => {
    expect(
      only(scenario({ secondary: 'secondary:\n  - { name: smmu, type: hw-walker, cached: [P, Z] }' })),
    ).toBe('7:48 len1 unknown page string "Z" in cached; pages are P, Q')
  })

  it('mprotect without a protection', () => {
    const msg = "mprotect takes page names then the new protection: ro, rw or none, as in 'mprotect A ro'"
    // points at the last word, which should have been the protection
    expect(only(scenario({ cpus: 'cpus:\n  C0: [mprotect P]' }))).toBe(`9:17 len1 ${msg}`)
    expect(only(scenario({ cpus: 'cpus:\n  C0: [mprotect P Q]' }))).toBe(`9:19 len1 ${msg}`)
    // no words at all: at the end of the op
    expect(only(scenario({ cpus: 'cpus:\n  C0: [mprotect]' }))).toBe(`9:16 len1 ${msg}`)
  })

  it('mprotect with a protection but no page', () => {
    expect(only(scenario({ cpus: 'cpus:\n  C0: [mprotect ro]' }))).toBe(
      '9:19 len1 mprotect needs at least one page',
    )
  })

  it('CRLF line endings and tabs inside op strings keep columns right', () => {
    expect(only(scenario({ cpus: 'cpus:\n  C0: [cow_fault\tZ]' }))).toBe(
      "9:18 len1 unknown page 'Z' (did you mean 'P'?); pages are P, Q",
    )
    expect(only(scenario({ cpus: 'cpus:\n  C0: [cow_fault Z]' }).replace(/\n/g, '\r\n'))).toBe(
      "9:18 len1 unknown page 'Z' (did you mean 'P'?); pages are P, Q",
    )
  })

  it('a document that is not a mapping', () => {
    expect(only('- a\n- b\n')).toBe(
      '1:1 len8 a scenario is a mapping with title, arch, pages, ...; found a list',
    )
  })

  it('reports every problem in one file, sorted by line then column', () => {
    const text = scenario(
      {
        title: '',
        arch: 'arch: arm65',
        cpus: 'cpus:\n  C0: [cow_fault Z, write P]',
        devices: 'devices:\n  D0: { via: smu, ops: [write P 7] }',
      },
      'secondry: []\n',
    )
    //  1 arch: arm65
    //  ...
    //  8   C0: [cow_fault Z, write P]
    //  9 devices:
    // 10   D0: { via: smu, ops: [write P 7] }
    // 11 expect: { start-end: violated }
    // 12 secondry: []
    const list = issuesOf(text)
    expect(list.map((i) => `${i.line}:${i.column} ${i.message.split(';')[0]!.split(' (')[0]}`)).toEqual([
      '1:1 title is required: one line saying what the scenario shows',
      '1:7 arch must be one of x86_64, arm64',
      "8:18 unknown page 'Z'",
      "8:28 write needs an integer value from -2147483648 to 2147483647 after the page, as in 'write A 1'",
      '10:14 via must name a secondary',
      "12:1 unknown key 'secondry' in the scenario",
    ])
    for (let i = 1; i < list.length; i++) {
      const [a, b] = [list[i - 1]!, list[i]!]
      expect(a.line < b.line || (a.line === b.line && a.column <= b.column)).toBe(true)
    }
  })
})

describe('file pages, writeback and the zap-era toggles: errors at file:line:column', () => {
  // Lines as in scenario(): 4 is page P, 5 is page Q, 9 is C0's ops, 12 is expect.
  const filePages = 'pages:\n  P: { value: 0, prot: rw, mapped: ro }\n  Q: { value: 3, kind: file }'

  it('a valid file-page scenario: kind, writeback, disk(P) and the era toggles', () => {
    const sc = loadScenarioText(
      scenario(
        { pages: filePages, cpus: 'cpus:\n  C0: [write_fault P, writeback Q]' },
        'forbid: disk(Q) == 3\nkernel: { delay_rmap: false }\n',
      ),
      'x.yaml',
    )
    expect(sc.pages.map((p) => p.kind)).toEqual(['anon', 'file'])
    expect(sc.threads[0]!.ops[1]).toEqual({ kind: 'writeback', page: 1 })
    expect(sc.forbid).toMatchObject({ a: { k: 'disk', page: 1 } })
    expect(sc.kernel).toEqual({
      pfnmapFlush: true,
      dirtyFlushUnderPtl: true,
      delayRmap: false,
      vtdFullRangeFix: true,
      migrateVmaFlushUnderPtl: true,
      collapseNotify: true,
      gupFastIpi: true,
      mremapFlushUnderPtl: true,
    })
  })

  it('dirty_flush_under_ptl: false alone also means no delayed rmap (the kernel before 2014)', () => {
    const sc = loadScenarioText(scenario({}, 'kernel: { dirty_flush_under_ptl: false }\n'), 'x.yaml')
    expect(sc.kernel).toEqual({
      pfnmapFlush: true,
      dirtyFlushUnderPtl: false,
      delayRmap: false,
      vtdFullRangeFix: true,
      migrateVmaFlushUnderPtl: true,
      collapseNotify: true,
      gupFastIpi: true,
      mremapFlushUnderPtl: true,
    })
  })

  it('delay_rmap without the forced flush under the PTL is refused, at the value', () => {
    expect(only(scenario({}, 'kernel: { dirty_flush_under_ptl: false, delay_rmap: true }\n'))).toBe(
      '13:53 len4 delay_rmap (5df397dec7c4, 2022) delays page_remove_rmap until the flush that 1cf35d47712d (2014) forces under the PTL; it needs dirty_flush_under_ptl: true',
    )
  })

  it('an unknown kernel toggle gets did-you-mean', () => {
    expect(only(scenario({}, 'kernel: { delay_rmaps: false }\n'))).toBe(
      `13:11 len11 unknown key 'delay_rmaps' in kernel (did you mean 'delay_rmap'?); allowed: ${KERNEL_KEYS.join(', ')}`,
    )
  })

  it('writeback of an anon page: at the page word', () => {
    expect(only(scenario({ cpus: 'cpus:\n  C0: [writeback P]' }))).toBe(
      "9:18 len1 writeback writes a file page's page-cache folio to disk; page 'P' is anon (declare it kind: file)",
    )
  })

  it('cow, ksm_merge and cow_fault are refused for file pages (migrate and reclaim are modelled)', () => {
    expect(
      only(scenario({ pages: filePages.replace('kind: file', 'kind: file, cow: true, mapped: ro') })),
    ).toBe(
      '5:35 len4 a file page is a MAP_SHARED mapping: writes go to the page cache, never to a copy; it cannot be cow',
    )
    expect(only(scenario({ pages: filePages, cpus: 'cpus:\n  C0: [ksm_merge Q]' }))).toBe(
      "9:18 len1 ksm_merge of a file page is not modelled (only anon pages); 'Q' is kind: file",
    )
    expect(
      loadScenarioText(
        scenario({ pages: filePages, cpus: 'cpus:\n  C0: [migrate Q, reclaim Q]' }),
        'x.yaml',
      ).threads[0]!.ops.map((o) => o.kind),
    ).toEqual(['migrate', 'reclaim'])
    expect(only(scenario({ pages: filePages, cpus: 'cpus:\n  C0: [cow_fault Q]' }))).toBe(
      "9:18 len1 cow_fault of a file page is not modelled (a MAP_SHARED file page never breaks COW); 'Q' is kind: file",
    )
  })

  it('fork with file pages, and writeback, truncate and anon reclaim with a fork child, are accepted', () => {
    expect(
      loadScenarioText(
        scenario({ pages: filePages, cpus: 'cpus:\n  C0: [fork, writeback Q, truncate Q]' }),
        'x.yaml',
      ).threads[0]!.ops.map((o) => o.kind),
    ).toEqual(['fork', 'writeback', 'truncate'])
    // Anon reclaim with a fork child: one swap slot shared by both PTEs (kernel/swapFork.test.ts).
    expect(
      loadScenarioText(
        scenario({ pages: filePages, cpus: 'cpus:\n  C0: [fork, reclaim P]' }),
        'x.yaml',
      ).threads[0]!.ops.map((o) => o.kind),
    ).toEqual(['fork', 'reclaim'])
  })

  it('disk(P) of an anon page: at the page name inside disk(...)', () => {
    expect(only(scenario({ pages: filePages }, 'forbid: disk(P) == 1\n'))).toBe(
      '13:14 len1 disk(P): only file pages (kind: file) are written back to disk',
    )
  })
})

describe('transparent huge pages: thp:, thp_split/thp_collapse, walk caches, the collapse toggles', () => {
  // Lines: 4 is page A, 5 is page B, 7 the secondary, 9 is C0's ops, 13 the extra line.
  const pages = 'pages:\n  A: { value: 1 }\n  B: { value: 2 }'
  const thp = (extra: string, over: Record<string, string> = {}): string =>
    scenario(
      {
        pages,
        secondary: 'secondary:\n  - { name: smmu, type: hw-walker, cached: [A] }',
        cpus: 'cpus:\n  C0: [thp_split H]',
        devices: 'devices:\n  D0: { via: smmu, ops: [read A] }',
        ...over,
      },
      extra,
    )

  it('a valid huge page: shorthand and full form, walk_cache, leaf_only and the toggles', () => {
    const sc = loadScenarioText(thp('thp: { H: [A, B] }\n'), 'x.yaml')
    expect(sc.thp).toEqual([{ name: 'H', pages: [0, 1], mapped: 'pmd', kind: 'anon' }])
    expect(sc.threads[0]!.ops[0]).toEqual({ kind: 'thp_split', hp: 0 })
    const full = loadScenarioText(
      thp(
        'thp: { H: { pages: [A, B], mapped: pte, kind: file } }\nkernel: { collapse_notify: false, gup_fast_ipi: false }\n',
        {
          secondary: 'secondary:\n  - { name: smmu, type: hw-walker, walk_cache: true, leaf_only: true }',
          cpus: 'cpus:\n  C0: [thp_collapse H]',
        },
      ),
      'x.yaml',
    )
    expect(full.thp).toEqual([{ name: 'H', pages: [0, 1], mapped: 'pte', kind: 'file' }])
    expect(full.kernel).toMatchObject({ collapseNotify: false, gupFastIpi: false })
    expect(full.secondaries[0]).toMatchObject({ walkCache: true, leafOnly: true })
  })

  it('an unknown huge page name in thp_split, at the word', () => {
    expect(only(thp('thp: { H: [A, B] }\n', { cpus: 'cpus:\n  C0: [thp_split G]' }))).toBe(
      "9:18 len1 unknown huge page 'G' (did you mean 'H'?); the huge page is H",
    )
  })

  it('thp_collapse without a thp: section, at the word', () => {
    expect(only(thp('', { cpus: 'cpus:\n  C0: [thp_collapse H]' }))).toBe(
      "9:21 len1 unknown huge page 'H': declare it under thp:, as in thp: { H: { pages: [A, B] } }",
    )
  })

  it('munmap, madvise_dontneed, reclaim, migrate, exit, oom_reap, write_fault, signal and wait are accepted', () => {
    const sc = loadScenarioText(
      thp('thp: { H: [A, B] }\n', {
        cpus: 'cpus:\n  C0: [munmap A, madvise_dontneed A B, write_fault B, reclaim A, migrate B sync, signal s, exit]\n  C1: [wait s, oom_reap]',
      }),
      'x.yaml',
    )
    expect(sc.threads[0]!.ops.map((o) => o.kind)).toEqual([
      'munmap',
      'madvise_dontneed',
      'write_fault',
      'reclaim',
      'migrate',
      'signal',
      'exit',
    ])
    expect(sc.threads[0]!.ops[4]).toEqual({ kind: 'migrate', page: 1, mode: 'sync' })
  })

  it('the other CPU ops are refused in a scenario with a huge page, with the reason, at the op word', () => {
    const ops =
      'read, write, write_fault, cow_fault, fork, ksm_merge, migrate_vma, thp_split, thp_collapse, mprotect, munmap, madvise_dontneed, reclaim, migrate, exit, oom_reap, signal, wait'
    expect(
      only(
        thp('thp: { H: [A, B] }\n', {
          cpus: 'cpus:\n  C0: [mremap A C]',
          pages: 'pages:\n  A: { value: 1 }\n  B: { value: 2 }\n  C: { value: 0, mapped: none }',
        }),
      ),
    ).toBe(
      `10:8 len6 mremap of A, a subpage of huge page H, is not modelled (move_huge_pmd() moves a whole huge PMD to a target PMD range with no mapping, and split_huge_pmd() comes first for part of one: not modelled; mremap between small pages is); the CPU ops on a subpage are ${ops} (a small page beside the huge pages takes every op)`,
    )
    // The first issue (the op's own check of the page's kind may follow).
    for (const op of ['truncate A', 'unmap_mapping_range A'])
      expect(fmt(issuesOf(thp('thp: { H: [A, B] }\n', { cpus: `cpus:\n  C0: [${op}]` }))[0]!)).toMatch(
        new RegExp(
          `^9:8 len${op.split(' ')[0]!.length} ${op.split(' ')[0]} of A, a subpage of huge page H, is not modelled \\(.+\\); the CPU ops on a subpage are`,
        ),
      )
    // An op that needs another kind of page: a subpage is anon.
    expect(fmt(issuesOf(thp('thp: { H: [A, B] }\n', { cpus: 'cpus:\n  C0: [writeback A]' }))[0]!)).toMatch(
      /^9:8 len9 writeback of A, a subpage of huge page H, is not modelled \(it needs a file page, and a subpage is anon\)/,
    )
  })

  it('two huge pages and small pages beside them: the loader gives each huge page a table of its own', () => {
    const sc = loadScenarioText(
      thp('thp: { J: { pages: [C, D], mapped: pte }, H: [A, B] }\n', {
        pages:
          'pages:\n  A: { value: 1 }\n  B: { value: 2 }\n  S: { value: 5, kind: file }\n  C: { value: 3 }\n  D: { value: 4 }',
        cpus: 'cpus:\n  C0: [thp_split H, thp_collapse J, writeback S, truncate S]\n  C1: [reclaim A]',
      }),
      'x.yaml',
    )
    // Address order, whatever the order under thp:.
    expect(sc.thp.map((h) => [h.name, h.pages, h.mapped])).toEqual([
      ['H', [0, 1], 'pmd'],
      ['J', [3, 4], 'pte'],
    ])
    expect(sc.pages.map((p) => [p.name, p.table ?? 0])).toEqual([
      ['A', 0],
      ['B', 0],
      ['S', 1],
      ['C', 2],
      ['D', 2],
    ])
    expect(sc.threads[0]!.ops.slice(0, 2)).toEqual([
      { kind: 'thp_split', hp: 0 },
      { kind: 'thp_collapse', hp: 1 },
    ])
  })

  it('declared tables are checked: the table of a huge page holds only its subpages', () => {
    const pg = (a: string, s: string, c: string) =>
      `pages:\n  A: { value: 1${a} }\n  B: { value: 2${a} }\n  S: { value: 5${s} }\n  C: { value: 3${c} }\n  D: { value: 4${c} }`
    expect(only(thp('thp: { H: [A, B], J: [C, D] }\n', { pages: pg('', ', table: 1', ', table: 1') }))).toBe(
      "6:25 len1 table 1 is the PMD range of huge page J (one huge PMD maps all of it); 'S' is a small page: give it a table of its own",
    )
    expect(
      only(thp('thp: { H: [A, B], J: [C, D] }\n', { pages: pg(', table: 0', ', table: 0', ', table: 1') })),
    ).toBe(
      "6:25 len1 table 0 is the PMD range of huge page H (one huge PMD maps all of it); 'S' is a small page: give it a table of its own",
    )
    expect(
      only(
        thp('thp: { H: [A, B], J: [C, D] }\n', {
          pages:
            'pages:\n  A: { value: 1 }\n  B: { value: 2 }\n  C: { value: 3 }\n  D: { value: 4, table: 0 }',
        }),
      ),
    ).toMatch(/huge pages H and J are both in table 0: each huge page is a 2 MiB PMD range of its own/)
    expect(only(thp('thp: { H: [A, B], J: [B, S] }\n', { pages: pg('', '', '') }))).toBe(
      "16:23 len1 page 'B' is already a subpage of huge page H: a page belongs to one huge page",
    )
  })

  it('more PMD ranges than tables is refused', () => {
    expect(
      only(
        thp('thp: { H: [A, B], J: [C, D] }\n', {
          pages:
            'pages:\n  S: {}\n  A: { value: 1 }\n  B: { value: 2 }\n  T: {}\n  C: { value: 3 }\n  D: { value: 4 }\n  U: {}',
        }),
      ),
    ).toMatch(/these pages need 5 PTE tables, and the model has at most 4/)
  })

  it('fork and cow_fault are accepted with a huge page; the child faults and zaps on its huge PMD', () => {
    const sc = loadScenarioText(
      thp('thp: { H: [A, B] }\n', {
        cpus: 'cpus:\n  C0: [fork, cow_fault A, munmap A B]\n  C1: { mm: child, ops: [write A 1, write_fault B, cow_fault A, madvise_dontneed A, munmap A B] }',
      }),
      'x.yaml',
    )
    expect(sc.threads[0]!.ops.map((o) => o.kind)).toEqual(['fork', 'cow_fault', 'munmap'])
    expect(sc.threads[1]!.mm).toBe(1)
  })

  it('with a fork child, the huge page rmap walks and the collapse are accepted in the process', () => {
    for (const op of ['migrate B', 'ksm_merge A', 'reclaim A', 'migrate_vma B', 'thp_collapse H'])
      expect(() =>
        loadScenarioText(thp('thp: { H: [A, B] }\n', { cpus: `cpus:\n  C0: [fork, ${op}]` }), 'x.yaml'),
      ).not.toThrow()
    // The child's threads act on their own huge PMD; thp_collapse, fork and exit stay refused there.
    const child = loadScenarioText(
      thp('thp: { H: [A, B] }\n', {
        cpus: 'cpus:\n  C0: [fork]\n  C1: { mm: child, ops: [mprotect A B ro, thp_split H, reclaim A, migrate B, ksm_merge A, migrate_vma B] }',
      }),
      'x.yaml',
    )
    expect(child.threads[1]!.ops.map((o) => o.kind)).toEqual([
      'mprotect',
      'thp_split',
      'reclaim',
      'migrate',
      'ksm_merge',
      'migrate_vma',
    ])
    expect(
      only(
        thp('thp: { H: [A, B] }\n', {
          cpus: 'cpus:\n  C0: [fork]\n  C1: { mm: child, ops: [thp_collapse H] }',
        }),
      ),
    ).toBe(
      "10:26 len12 thp_collapse in a thread of the fork child is not modelled in a scenario with a huge page; the child's threads may read, write, write_fault, cow_fault, munmap, madvise_dontneed, mprotect, thp_split, reclaim, migrate, ksm_merge, migrate_vma, signal, wait",
    )
  })

  it('ksm_merge and migrate_vma are accepted on a huge page (split_huge_page first)', () => {
    const sc = loadScenarioText(
      thp('thp: { H: [A, B] }\n', { cpus: 'cpus:\n  C0: [ksm_merge A, migrate_vma B]' }),
      'x.yaml',
    )
    expect(sc.threads[0]!.ops).toEqual([
      { kind: 'ksm_merge', page: 0 },
      { kind: 'migrate_vma', page: 1 },
    ])
  })

  it('a file (shmem) huge page takes the split, the zaps and mprotect; its folio ops are refused, at the op word', () => {
    const file = 'thp: { H: { pages: [A, B], kind: file } }\n'
    for (const op of ['munmap A', 'madvise_dontneed A B', 'mprotect A ro', 'thp_split H', 'exit', 'oom_reap'])
      expect(() => loadScenarioText(thp(file, { cpus: `cpus:\n  C0: [${op}]` }), 'x.yaml')).not.toThrow()
    // truncate below the first subpage drops the whole folio; below a later one it would split it.
    expect(() => loadScenarioText(thp(file, { cpus: 'cpus:\n  C0: [truncate A]' }), 'x.yaml')).not.toThrow()
    expect(only(thp(file, { cpus: 'cpus:\n  C0: [truncate B]' }))).toMatch(
      /^9:8 len8 truncate of B, a subpage of huge page H, is not modelled \(a truncate below a later subpage cuts the large folio in the middle \(truncate_inode_partial_folio splits it with split_folio\)/,
    )
    // The subpages are the shmem file's page-cache pages.
    const sc = loadScenarioText(thp(file, { cpus: 'cpus:\n  C0: [munmap A]' }), 'x.yaml')
    expect(sc.pages.map((p) => p.kind)).toEqual(['file', 'file'])
    const why: Record<string, RegExp> = {
      'reclaim A': /shmem_writepage: split_huge_page/,
      'migrate B': /set_pmd_migration_entry/,
      'ksm_merge A': /vma_ksm_compatible refuses VM_SHARED/,
      'migrate_vma B': /only anonymous memory to device-private memory/,
    }
    for (const [op, re] of Object.entries(why)) {
      const msg = only(thp(file, { cpus: `cpus:\n  C0: [${op}]` }))
      const w = op.split(' ')[0]!
      expect(msg.startsWith(`9:8 len${w.length} ${w} of a file (shmem) huge page is not modelled: `)).toBe(
        true,
      )
      expect(msg).toMatch(re)
    }
  })

  it('reclaim and migrate of the huge page: one thread; with thp_collapse only on a mapped: pte huge page collapsed once, at the op word', () => {
    expect(
      only(thp('thp: { H: [A, B] }\n', { cpus: 'cpus:\n  C0: [reclaim A, migrate A]\n  C1: [migrate B]' })),
    ).toBe(
      '10:8 len7 migrate of the huge page in a second thread (C0 already has reclaim) is not modelled: reclaim and migration isolate and lock the huge folio, ksm_merge and migrate_vma lock it to split it, one at a time, and the model has that lock for small folios only; put them in one thread',
    )
    expect(
      only(thp('thp: { H: [A, B] }\n', { cpus: 'cpus:\n  C0: [ksm_merge A]\n  C1: [migrate_vma B]' })),
    ).toMatch(/^10:8 len11 migrate_vma of the huge page in a second thread \(C0 already has ksm_merge\)/)
    expect(
      only(thp('thp: { H: [A, B] }\n', { cpus: 'cpus:\n  C0: [ksm_merge A]\n  C1: [thp_collapse H]' })),
    ).toMatch(/^9:8 len9 ksm_merge with thp_collapse of a huge page declared mapped: pmd is not modelled/)
    expect(
      only(thp('thp: { H: [A, B] }\n', { cpus: 'cpus:\n  C0: [reclaim A]\n  C1: [thp_collapse H]' })),
    ).toBe(
      '9:8 len7 reclaim with thp_collapse of a huge page declared mapped: pmd is not modelled: the collapse could meet subpages of the huge folio this op isolated, whose lock the model does not have (declare it mapped: pte: the collapse then meets small folios and backs out when one is locked)',
    )
    // mapped: pte, one collapse: accepted (the collapse backs out on a locked page: kernel/folioLock.test.ts).
    const pte = 'thp: { H: { pages: [A, B], mapped: pte } }\n'
    for (const op of ['reclaim A', 'migrate B', 'ksm_merge A', 'migrate_vma B'])
      expect(
        () => loadScenarioText(thp(pte, { cpus: `cpus:\n  C0: [${op}]\n  C1: [thp_collapse H]` }), 'x.yaml'),
        op,
      ).not.toThrow()
    expect(
      only(
        thp(pte, { cpus: 'cpus:\n  C0: [reclaim A]\n  C1: [thp_collapse H, thp_split H, thp_collapse H]' }),
      ),
    ).toMatch(/^9:8 len7 reclaim with two thp_collapse ops of the huge page is not modelled/)
  })

  it('subpages are 2 to 4 adjacent anon rw pages', () => {
    expect(only(thp('thp: { H: [A] }\n'))).toBe(
      '13:11 len3 a huge page is modelled with 2 to 4 subpages (standing for 512); found 1',
    )
    expect(
      only(thp('thp: { H: [A, B] }\n', { pages: 'pages:\n  A: { value: 1 }\n  B: { value: 2, prot: ro }' })),
    ).toBe(
      "13:15 len1 a subpage of a huge page is modelled as anon memory mapped read-write (prot: rw, mapped: rw, not cow); 'B' is not",
    )
  })

  it('an unknown key in the huge page gets did-you-mean, at the key', () => {
    expect(only(thp('thp: { H: { pages: [A, B], maped: pte } }\n'))).toBe(
      "13:28 len5 unknown key 'maped' in huge page 'H' (did you mean 'mapped'?); allowed: pages, mapped, kind",
    )
  })

  it('walk_cache is allowed without thp: (the PTE page freed by munmap), leaf_only needs walk_cache', () => {
    const sc = loadScenarioText(
      scenario({
        secondary: 'secondary:\n  - { name: smmu, type: hw-walker, walk_cache: true, cached: [P] }',
      }),
      'x.yaml',
    )
    expect(sc.thp).toEqual([])
    expect(sc.secondaries.map((d) => d.type === 'hw-walker' && d.walkCache)).toEqual([true])
    expect(
      only(
        thp('thp: { H: [A, B] }\n', {
          secondary: 'secondary:\n  - { name: smmu, type: hw-walker, leaf_only: true }',
        }),
      ),
    ).toBe('7:47 len4 leaf_only says the driver never invalidates its walk cache: it needs walk_cache: true')
  })

  it('collapse_notify needs a file huge page, at the value', () => {
    expect(only(thp('thp: { H: [A, B] }\nkernel: { collapse_notify: false }\n'))).toBe(
      '14:28 len5 collapse_notify (f268f6cf875f) concerns the file/shmem collapse path: it needs a huge page with kind: file under thp:',
    )
  })
})

describe('HMM mirrors: protocol, hmm_retry, migrate_vma owner (issue 13)', () => {
  const hmm = (secondary: string, cpus = 'cpus:\n  C0: [migrate_vma P owner hmm]'): string =>
    scenario({
      secondary: `secondary:\n  - ${secondary}`,
      cpus,
      devices: 'devices:\n  D0: { via: hmm, ops: [read P -> r0] }',
    })

  it('protocol: hmm, hmm_retry and migrate_vma ... owner load into the decl and the op', () => {
    const sc = loadScenarioText(
      hmm('{ name: hmm, type: sw-mirror, protocol: hmm, hmm_retry: false }'),
      'x.yaml',
    )
    expect(sc.secondaries[0]).toMatchObject({ type: 'sw-mirror', protocol: 'hmm', hmmRetry: false })
    expect(sc.threads[0]!.ops[0]).toEqual({ kind: 'migrate_vma', page: 0, owner: 0 })
    // Without the keys the decl is what it always was (kvm).
    const kvm = loadScenarioText(
      hmm('{ name: hmm, type: sw-mirror }', 'cpus:\n  C0: [migrate_vma P]'),
      'x.yaml',
    )
    expect(kvm.secondaries[0]).toEqual({ type: 'sw-mirror', name: 'hmm', cached: [] })
    expect(kvm.threads[0]!.ops[0]).toEqual({ kind: 'migrate_vma', page: 0 })
  })

  it('a bad protocol, at the value, with did-you-mean', () => {
    expect(only(hmm('{ name: hmm, type: sw-mirror, protocol: hm }', 'cpus:\n  C0: [migrate_vma P]'))).toBe(
      `7:45 len2 protocol must be one of kvm, hmm; found string "hm" (did you mean 'hmm'?)`,
    )
  })

  it('hmm_retry needs protocol: hmm', () => {
    expect(
      only(hmm('{ name: hmm, type: sw-mirror, hmm_retry: false }', 'cpus:\n  C0: [migrate_vma P]')),
    ).toBe(
      '7:46 len5 hmm_retry says whether the driver calls mmu_interval_read_retry: it needs protocol: hmm (an mmu_interval_notifier)',
    )
  })

  it('owner must name a protocol: hmm sw-mirror; a word other than owner is refused', () => {
    expect(only(hmm('{ name: hmm, type: sw-mirror }'))).toBe(
      "9:28 len3 owner names the HMM driver migrating the page: a sw-mirror with protocol: hmm; 'hmm' is not one (none declared)",
    )
    expect(
      only(hmm('{ name: hmm, type: sw-mirror, protocol: hmm }', 'cpus:\n  C0: [migrate_vma P ownr hmm]')),
    ).toBe("9:22 len4 migrate_vma takes a page, then optionally 'owner <sw-mirror>'; found 'ownr'")
  })
})

describe('exit and oom_reap: the release and nonblock keys, located errors', () => {
  it('valid: release and nonblock on both kinds of secondary, exit and oom_reap ops', () => {
    const sc = loadScenarioText(
      scenario({
        secondary:
          'secondary:\n  - { name: smmu, type: hw-walker, release: none, nonblock: eagain }\n  - { name: kvm, type: sw-mirror, release: block }',
        cpus: 'cpus:\n  C0: [write P 1, exit]\n  R: [oom_reap]',
      }),
      'x.yaml',
    )
    expect(sc.secondaries.map((d) => [d.release, d.nonblock])).toEqual([
      ['none', 'eagain'],
      ['block', undefined],
    ])
    expect(sc.threads.map((t) => t.ops.map((o) => o.kind))).toEqual([
      ['write', 'exit'],
      ['oom_reap'],
      ['write'],
    ])
  })

  it('a bad release value gets did-you-mean, at the value', () => {
    expect(
      only(scenario({ secondary: 'secondary:\n  - { name: smmu, type: hw-walker, release: blok }' })),
    ).toBe('7:45 len4 release must be one of block, none; found string "blok" (did you mean \'block\'?)')
  })

  it('a bad nonblock value, at the value', () => {
    expect(
      only(scenario({ secondary: 'secondary:\n  - { name: smmu, type: sw-mirror, nonblock: sleep }' })),
    ).toMatch(/^7:46 len5 nonblock must be one of proceed, eagain; found string "sleep"/)
  })

  it('exit with another process thread that uses memory, at the exit op', () => {
    expect(only(scenario({ cpus: 'cpus:\n  C0: [exit]\n  C1: [read P]' }))).toBe(
      "9:8 len4 exit_mmap runs when the process's last thread exits, but C1 also uses the process's memory; give it only signal, wait, oom_reap or truncate (or fold its ops into C0 before exit)",
    )
  })
})

describe('file: P pages and mremap: located errors', () => {
  const file =
    'pages:\n  P: { value: 0, prot: rw, mapped: ro }\n  F: { value: 3, kind: file }\n  G: { kind: file, file: F, mapped: none }'
  it("valid: an address of F's file offset, mremap F G and truncate", () => {
    const sc = loadScenarioText(
      scenario({ pages: file, cpus: 'cpus:\n  C0: [mremap F G]\n  T: [truncate F]' }),
      'x.yaml',
    )
    expect(sc.pages.map((p) => p.fileOf)).toEqual([undefined, undefined, 1])
    expect(sc.threads[0]!.ops[0]).toEqual({ kind: 'mremap', page: 1, to: 2 })
  })
  it('file: names an unknown page, with did-you-mean, at the value', () => {
    expect(only(scenario({ pages: file.replace('file: F', 'file: Fx') }))).toBe(
      "6:26 len2 unknown page 'Fx' (did you mean 'F'?); pages are P, F, G",
    )
  })
  it('file: needs kind: file and a file page of its own', () => {
    expect(only(scenario({ pages: file.replace('{ kind: file, file: F', '{ file: F') }))).toMatch(
      /^6:14 len1 file: F makes this address map a file page's folio: it needs kind: file/,
    )
    expect(only(scenario({ pages: file.replace('file: F', 'file: P') }))).toBe(
      "6:26 len1 'P' must be a file page with its own folio (kind: file, no file: key)",
    )
  })
  it('mremap of a file page to an address that is not its file offset, at the target', () => {
    expect(
      only(scenario({ pages: file + '\n  H: { mapped: none }', cpus: 'cpus:\n  C0: [mremap F H]' })),
    ).toMatch(
      /^11:17 len1 moving a file page: declare the target as the same file offset, 'H: \{ kind: file, file: F, mapped: none \}'/,
    )
  })
  it('mremap to a mapped address is accepted (mremap_to unmaps it first); of a file page it must be the same offset', () => {
    const sc = loadScenarioText(
      scenario({ pages: 'pages:\n  P: { value: 1 }\n  Q: { value: 2 }', cpus: 'cpus:\n  C0: [mremap P Q]' }),
      'x.yaml',
    )
    expect(sc.threads[0]!.ops[0]).toEqual({ kind: 'mremap', page: 0, to: 1 })
    // A target declared with a VMA keeps it; only mapped: none without prot is a hole.
    expect(sc.pages.map((p) => p.vma)).toEqual([undefined, undefined])
    expect(only(scenario({ pages: file, cpus: 'cpus:\n  C0: [mremap F P]' }))).toMatch(
      /^10:17 len1 moving a file page: declare the target as the same file offset/,
    )
  })
  it('an mremap target declared mapped: none with no prot is a hole (no VMA); with prot it has one', () => {
    const load = (q: string) =>
      loadScenarioText(
        scenario({ pages: `pages:\n  P: { value: 1 }\n  Q: ${q}`, cpus: 'cpus:\n  C0: [mremap P Q]' }),
        'x.yaml',
      )
    expect(load('{ mapped: none }').pages[1]!.vma).toBe(false)
    expect(load('{ prot: rw, mapped: none }').pages[1]!.vma).toBeUndefined()
  })
})

describe('table: N (more than one PTE table, issue 13): located errors', () => {
  // Lines: 4 is page P, 5 is page Q, 6 is page R when given.
  const pages = (p: string, q: string, r?: string): string =>
    `pages:\n  P: { value: 0, prot: rw, mapped: ro${p} }\n  Q: { value: 0${q} }${r === undefined ? '' : `\n  R: { value: 0${r} }`}`

  it('valid: Q in table 1; an undeclared table is 0 (and left out of the page)', () => {
    const sc = loadScenarioText(scenario({ pages: pages('', ', table: 1') }), 'x.yaml')
    expect(sc.pages.map((p) => p.table)).toEqual([undefined, 1])
    const same = loadScenarioText(scenario({ pages: pages(', table: 0', ', table: 0') }), 'x.yaml')
    expect(same.pages.map((p) => p.table)).toEqual([undefined, undefined])
  })

  it('a table out of 0..3, at the value', () => {
    expect(only(scenario({ pages: pages('', ', table: 4') }))).toBe(
      '5:25 len1 table must be an integer from 0 to 3; found number 4',
    )
    expect(only(scenario({ pages: pages('', ', table: one') }))).toMatch(
      /^5:25 len3 table must be an integer/,
    )
  })

  it('the first page is in table 0', () => {
    expect(only(scenario({ pages: pages(', table: 1', ', table: 1') }))).toBe(
      "4:47 len1 the first page is in table 0 (tables are numbered from 0 in address order); 'P' says table 1",
    )
  })

  it('tables ascend in declaration (address) order: a page of table 0 after table 1, at its table', () => {
    expect(only(scenario({ pages: pages('', ', table: 1', ', table: 0') }))).toBe(
      "6:25 len1 pages are declared in address order, so tables ascend: 'R' (table 0) comes after 'Q' (table 1); declare table 0's pages together, before table 1's",
    )
  })

  it('tables are numbered without gaps', () => {
    expect(only(scenario({ pages: pages('', ', table: 2') }))).toBe(
      "5:25 len1 tables are numbered without gaps: 'Q' is in table 2, but no page is in table 1",
    )
  })

  it('a kernel page has no table key (init_mm is modelled with one table)', () => {
    expect(only(scenario({ arch: 'arch: x86_64' }, 'kernel_pages:\n  K: { value: 1, table: 1 }\n'))).toBe(
      "14:18 len5 unknown key 'table' in kernel page 'K'; allowed: value, mapped",
    )
  })

  it("a huge page's subpages share one table, at the subpage", () => {
    const thp = scenario(
      {
        pages: 'pages:\n  A: { value: 1 }\n  B: { value: 2, table: 1 }',
        secondary: 'secondary:\n  - { name: smmu, type: hw-walker, cached: [A] }',
        cpus: 'cpus:\n  C0: [thp_split H]',
        devices: 'devices:\n  D0: { via: smmu, ops: [read A] }',
      },
      'thp: { H: [A, B] }\n',
    )
    expect(only(thp)).toBe(
      "13:15 len1 the subpages of a huge page are one PMD range, so they share one PTE table: 'B' is in table 1, 'A' in table 0",
    )
  })
})

describe('policies: defined sets of call sites (issue 14)', () => {
  const defs = (body: string): Record<string, string> => ({
    expect: `policies:\n${body}\nexpect: { start-end: violated }`,
  })

  it('a name for a list of sites and presets; expect and expect_metrics use it', () => {
    const sc = loadScenarioText(
      scenario({
        expect:
          'policies:\n  popple-v1: [start-end, handle_pte_fault]\n  mine: [ptep_clear_flush_notify, flush_tlb_range]\n' +
          "expect: { popple-v1: violated, 'sites:flush_tlb_page,wp_page_reuse': holds }\n" +
          'expect_metrics: { popple-v1: { device_faults: 2 } }',
      }),
      'x.yaml',
    )
    expect(sc.policies.map((p) => [p.name, p.sites])).toEqual([
      ['popple-v1', ['invalidate_range_start', 'invalidate_range_end', 'handle_pte_fault']],
      ['mine', ['ptep_clear_flush_notify', 'flush_tlb_range']],
    ])
    // A sites: key is stored under its canonical name.
    expect(sc.expect.map(([n]) => n)).toEqual(['popple-v1', 'sites:flush_tlb_page+wp_page_reuse'])
    expect(sc.expectMetrics.map(([n]) => n)).toEqual(['popple-v1'])
  })

  it('an unknown site: at the item, with a did-you-mean and the sites', () => {
    const e = only(scenario(defs('  mine: [flush_tlb_page, flush_tlb_rang]')))
    expect(e).toMatch(
      /^13:26 len14 unknown site 'flush_tlb_rang' \(did you mean 'flush_tlb_range'\?\); a policy lists sites \(invalidate_range_start, /,
    )
  })

  it('a bad variant, a repeated site, a number: each at its item', () => {
    const list = issuesOf(scenario(defs('  mine: [start-end+frob, flush_tlb_mm, flush_tlb_mm, 3]')))
    expect(list.map(fmt)).toEqual([
      "13:10 len14 unknown policy variant 'frob'; expected one of upgrade-notify, access-flags-notify, pri-flush, kernel-notifier",
      '13:40 len12 flush_tlb_mm is listed twice',
      '13:54 len1 a site or preset name; found number 3',
    ])
  })

  it('names that cannot be defined: at the key', () => {
    expect(only(scenario(defs('  arch-hook: [flush_tlb_page]')))).toBe(
      "13:3 len9 'arch-hook' is a built-in policy; choose another name",
    )
    expect(only(scenario(defs('  flush_tlb_page: [flush_tlb_page]')))).toBe(
      "13:3 len14 'flush_tlb_page' is a site; choose a name that is not one",
    )
    expect(only(scenario(defs("  'a+b': [flush_tlb_page]")))).toMatch(
      /^13:3 len5 a policy name is letters, digits, _ \. - \(up to 64, no \+ , or :\); found 'a\+b'/,
    )
    expect(only(scenario(defs('  all: [flush_tlb_page]')))).toMatch(
      /^13:3 len3 'all' means the three presets/,
    )
  })

  it('not a list, not a mapping', () => {
    expect(only(scenario(defs('  mine: flush_tlb_page')))).toMatch(
      /^13:9 len14 the policy mine is a list of sites \(and presets whose sites it takes\), as in \[start-end, handle_pte_fault\]; found string/,
    )
    expect(only(scenario({ expect: 'policies: [a]\nexpect: { start-end: violated }' }))).toMatch(
      /^12:11 len3 policies maps names to lists of sites/,
    )
  })

  it('expect naming an undefined policy: did you mean the defined one', () => {
    expect(only(scenario({ expect: 'policies:\n  mine: [flush_tlb_page]\nexpect: { mien: holds }' }))).toBe(
      "14:11 len4 unknown policy 'mien' (did you mean 'mine'?); expected start-end, invalidate-range, arch-hook, a policy the file defines (mine) or sites:a,b",
    )
  })
})
