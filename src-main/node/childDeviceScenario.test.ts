/**
 * The `mm: process | child` key of a secondary (issue 13): the loader binds the secondary, and
 * its device threads, to the fork child's mm, and refuses it where the child does not exist or
 * the model works on the process's mm only. Errors name the line, column and what was expected.
 */
import { describe, expect, it } from 'vitest'
import { loadScenarioText, ScenarioLoadError, type LocatedIssue } from './scenarioFiles'

/**
 * Lines: 1 title, 2 arch, 3 pages:, 4 A, 5 B, 6 secondary:, 7 the secondary, 8 cpus:, 9 C0,
 * 10 devices:, 11 D0.
 */
function yaml(sec: string, c0 = '[write A 7]', a = '{ value: 5, prot: rw, cow: true }'): string {
  return [
    'title: t',
    'arch: x86_64',
    'pages:',
    `  A: ${a}`,
    '  B: { value: 1, prot: rw }',
    'secondary:',
    `  - ${sec}`,
    'cpus:',
    `  C0: ${c0}`,
    'devices:',
    '  D0: { via: dev, ops: [read A -> d] }',
    '',
  ].join('\n')
}

function issues(text: string): string[] {
  try {
    loadScenarioText(text, 'x.yaml')
  } catch (e) {
    if (e instanceof ScenarioLoadError)
      return e.issues.map((i: LocatedIssue) => `${i.line}:${i.column} ${i.message}`)
    throw e
  }
  throw new Error('expected the scenario to be rejected')
}

const NOT_COW = '{ value: 5, prot: rw }'

describe('secondary mm: child', () => {
  it('with cow pages: the secondary and its device thread are bound to the child (mm 1) from the start', () => {
    const sc = loadScenarioText(yaml('{ name: dev, type: hw-walker, mm: child, cached: [A] }'), 'x.yaml')
    expect(sc.secondaries[0]).toMatchObject({ name: 'dev', mm: 1, cached: [0] })
    expect(sc.threads.find((t) => t.name === 'D0')).toMatchObject({ kind: 'device', mm: 1, via: 0 })
    expect(sc.threads.find((t) => t.name === 'C0')).toMatchObject({ kind: 'cpu', mm: 0 })
  })

  it('with a fork op, a sw-mirror (kvm or hmm) too; mm: process, or no mm, leaves the decl as it was', () => {
    for (const p of ['', ', protocol: hmm']) {
      const sc = loadScenarioText(
        yaml(`{ name: dev, type: sw-mirror, mm: child${p} }`, '[fork]', NOT_COW),
        'x.yaml',
      )
      expect(sc.secondaries[0]!.mm).toBe(1)
      expect(sc.threads.find((t) => t.name === 'D0')!.mm).toBe(1)
    }
    for (const m of ['', ', mm: process']) {
      const sc = loadScenarioText(yaml(`{ name: dev, type: hw-walker${m} }`, '[fork]', NOT_COW), 'x.yaml')
      expect(sc.secondaries[0]).not.toHaveProperty('mm')
      expect(sc.threads.find((t) => t.name === 'D0')!.mm).toBe(0)
    }
  })

  it('needs a fork child: a fork op or a cow: true page', () => {
    expect(issues(yaml('{ name: dev, type: hw-walker, mm: child }', '[write A 7]', NOT_COW))).toEqual([
      "7:39 mm: child binds 'dev' to the fork child's mm: it needs a fork child, a fork op or a cow: true page",
    ])
  })

  it('a bad value, at the value', () => {
    expect(issues(yaml('{ name: dev, type: hw-walker, mm: kid }'))).toEqual([
      '7:39 mm must be one of process, child; found string "kid"',
    ])
  })

  it('cached names only cow: true pages (the child maps nothing else from the start)', () => {
    expect(issues(yaml('{ name: dev, type: hw-walker, mm: child, cached: [B] }'))).toEqual([
      "7:54 a secondary bound to the fork child caches only what the child maps from the start: cow: true pages; 'B' is not one (with a fork op the driver binds after fork returns, with nothing cached)",
    ])
  })

  it('refuses the keys the model gives a meaning on the process only, each at its key', () => {
    expect(
      issues(
        yaml('{ name: dev, type: hw-walker, mm: child, release: none, nonblock: eagain, pasid: supervisor }'),
      ),
    ).toEqual([
      "7:55 release with mm: child is not modelled: ->release runs from the exit of the mm's last user, and the model's exit and oom_reap work on the process's mm: the fork child does not exit, so it would never apply",
      "7:71 nonblock with mm: child is not modelled: the OOM reaper's nonblocking range_start reaps the process's mm, not the child's",
      '7:86 pasid with mm: child is not modelled: a supervisor PASID is modelled for the process (kernel addresses through init_mm)',
    ])
    // pasid: user (the default) written out is fine, and so is a walk cache (of the child's tables).
    expect(
      loadScenarioText(
        yaml('{ name: dev, type: hw-walker, mm: child, pasid: user, walk_cache: true }'),
        'x.yaml',
      ).secondaries[0],
    ).toMatchObject({ mm: 1, walkCache: true })
  })

  it('not in a scenario with a huge page (thp:)', () => {
    const text = [
      'title: t',
      'arch: x86_64',
      'thp:',
      '  H: [A, B]',
      'pages:',
      '  A: { value: 3 }',
      '  B: { value: 4 }',
      'secondary:',
      '  - { name: dev, type: hw-walker, mm: child }',
      'cpus:',
      '  C0: [fork]',
      'devices:',
      '  D0: { via: dev, ops: [read A -> d] }',
      '',
    ].join('\n')
    expect(issues(text)).toEqual([
      "9:39 mm: child in a scenario with a huge page (thp:) is not modelled: a device bound to the child is not checked against the huge-page paths (the child's huge PMD, its 2 MiB entries, KVM's GUP-fast walk of it)",
    ])
  })

  it('migrate_vma owner may not name a mirror of the child', () => {
    expect(
      issues(yaml('{ name: dev, type: sw-mirror, protocol: hmm, mm: child }', '[migrate_vma A owner dev]')),
    ).toEqual([
      "9:22 owner dev: dev mirrors the fork child (mm: child), and migrate_vma here migrates the process's memory; a driver migrates only the mm it mirrors",
    ])
  })
})
