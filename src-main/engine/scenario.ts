/**
 * Scenario validation: from the plain data a YAML (or JSON) document parses to, to a checked
 * `Scenario`. Every problem is reported with its path in the document and, inside op strings
 * and conditions, the character offset, so callers can point at line and column.
 *
 * One module per section of the file, each with its own keys, docs and errors: scenario/pages
 * (`pages`, `kernel_pages`), scenario/thp, scenario/secondaries, scenario/threads (`cpus`,
 * `devices` and their ops), scenario/policies (`policies`), scenario/expect (`forbid`, `expect`,
 * `expect_metrics`),
 * scenario/kernel (`mmu_gather`, `kernel`, `costs`) and scenario/explore.
 */
import type { Arch, PageDecl, Scenario, ThreadDecl } from './types'
import { ScenarioError } from './types'
import { checkKeys, isObj, Issues, oneOf, typeName } from './scenario/common'
import { parseExpectations } from './scenario/expect'
import { parseExplore } from './scenario/explore'
import { parseKernel } from './scenario/kernel'
import { parsePages } from './scenario/pages'
import { parsePolicies } from './scenario/policies'
import { parseSecondaries } from './scenario/secondaries'
import { parseThp } from './scenario/thp'
import { parseThreads } from './scenario/threads'

export { SCENARIO_LIMITS } from './scenario/common'
export { KERNEL_PAGE_KEYS, PAGE_KEYS, PAGE_KINDS } from './scenario/pages'
export { HW_KEYS, SW_KEYS } from './scenario/secondaries'
export { CPU_OPS, CPU_THREAD_KEYS, DEVICE_OPS, DEVICE_THREAD_KEYS } from './scenario/threads'
export { KERNEL_KEYS, MMU_GATHER_KEYS } from './scenario/kernel'
export { THP_KEYS } from './scenario/thp'
export { EXPLORE_KEYS } from './scenario/explore'
export { EXACT_EXPECT_KEYS } from './scenario/expect'
export { definePolicies, POLICY_NAME } from './scenario/policies'

export const TOP_KEYS = [
  'title',
  'source',
  'notes',
  'arch',
  'pages',
  'secondary',
  'cpus',
  'devices',
  'forbid',
  'policies',
  'expect',
  'mmu_gather',
  'explore',
  'costs',
  'kernel',
  'kernel_pages',
  'expect_metrics',
  'thp',
] as const

/** Validates a parsed scenario document. Throws `ScenarioError` listing every problem found. */
export function validateScenario(raw: unknown): Scenario {
  const issues = new Issues()
  if (!isObj(raw)) {
    throw new ScenarioError([
      {
        path: [],
        message: `a scenario is a mapping with title, arch, pages, ...; found ${typeName(raw)}`,
        offset: null,
        length: null,
        at: 'value',
      },
    ])
  }
  checkKeys(raw, TOP_KEYS, [], issues, 'the scenario')

  let title = ''
  if (typeof raw.title === 'string' && raw.title.trim()) title = raw.title
  else
    issues.add(
      ['title'],
      `title is required: one line saying what the scenario shows; found ${typeName(raw.title)}`,
    )
  let source: string | null = null
  if (raw.source !== undefined) {
    if (typeof raw.source === 'string') source = raw.source
    else issues.add(['source'], `source must be a string; found ${typeName(raw.source)}`)
  }
  const arch =
    raw.arch === undefined
      ? (issues.add(['arch'], 'arch is required: x86_64 or arm64'), null)
      : oneOf<Arch>(raw.arch, ['x86_64', 'arm64'], ['arch'], issues, 'arch')

  const parsed = parsePages(raw, issues, arch)
  const pageIndex = parsed.pageIndex
  const pageRef = (n: string): number | null => {
    const i = pageIndex.get(n)
    return i === undefined || i < 0 ? null : i
  }
  // thp: may assign the pages' tables (each huge page a PMD range of its own).
  const { thp, pages } = parseThp(raw.thp, issues, parsed.pages, pageIndex, raw.pages)
  const { secondaries, secIndex } = parseSecondaries(raw, issues, arch, pages, pageIndex, pageRef)
  const { threads, registers, threadNames, flags } = parseThreads(
    raw,
    issues,
    pages,
    pageIndex,
    pageRef,
    thp,
    secondaries,
    secIndex,
  )
  const pagesWithHoles = mremapHoles(raw, pages, threads)
  const policies = parsePolicies(raw, issues)
  const { forbid, forbidText, expect, expectMetrics } = parseExpectations(
    raw,
    issues,
    arch,
    pages,
    pageRef,
    registers,
    policies,
  )
  const { gatherBatch, kernel, costs } = parseKernel(raw, issues, thp)
  const explore = parseExplore(raw.explore, issues, threadNames)

  if (issues.list.length > 0) throw new ScenarioError(issues.list)
  return {
    title,
    source,
    arch: arch!,
    pages: pagesWithHoles,
    secondaries,
    threads,
    registers,
    forbid,
    forbidText,
    policies,
    expect,
    gatherBatch,
    explore,
    costs,
    kernel,
    expectMetrics,
    flags,
    thp,
  }
}

/**
 * An mremap target declared `mapped: none` with no `prot:` is a hole in the address space:
 * no VMA until move_vma's copy_vma makes one, so mremap_to's do_munmap (MREMAP_FIXED) finds
 * nothing there. With `prot:` it has a VMA (a reservation, say), which that do_munmap unmaps.
 */
function mremapHoles(
  raw: Record<string, unknown>,
  pages: readonly PageDecl[],
  threads: readonly ThreadDecl[],
): PageDecl[] {
  const rawPages = isObj(raw.pages) ? raw.pages : {}
  const targets = new Set<number>()
  for (const t of threads) for (const op of t.ops) if (op.kind === 'mremap') targets.add(op.to)
  return pages.map((p, i) => {
    const d = rawPages[p.name]
    return targets.has(i) && p.mapped === 'none' && isObj(d) && d.prot === undefined
      ? { ...p, vma: false }
      : p
  })
}
