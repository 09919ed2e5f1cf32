/**
 * Scenario validation: from the plain data a YAML (or JSON) document parses to, to a checked
 * `Scenario`. Every problem is reported with its path in the document and, inside op strings
 * and conditions, the character offset, so callers can point at line and column.
 */
import { parseExpr } from './expr'
import { COST_KEYS } from './costs'
import { parsePolicy } from './policy'
import type {
  Arch,
  Expectation,
  ExploreDecl,
  Expr,
  FlushAt,
  Mapped,
  Op,
  PageDecl,
  Prot,
  Scenario,
  ScenarioIssue,
  SecondaryDecl,
  ThpDecl,
  ThreadDecl,
  MetricExpectation,
  MetricName,
} from './types'
import { INVARIANTS, METRIC_NAMES, ScenarioError } from './types'

type Path = ReadonlyArray<string | number>
type Obj = Record<string, unknown>

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

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
  'expect',
  'mmu_gather',
  'explore',
  'costs',
  'kernel',
  'kernel_pages',
  'expect_metrics',
  'thp',
] as const
export const KERNEL_PAGE_KEYS = ['value', 'mapped'] as const
export const PAGE_KEYS = ['value', 'prot', 'cow', 'mapped', 'kind'] as const
export const HW_KEYS = [
  'name',
  'type',
  'btm',
  'flush_at',
  'cached',
  'retry_limit',
  'negative_caching',
  'iommu',
  'ats',
  'atc_order',
  'pasid',
  'walk_cache',
  'leaf_only',
] as const
export const SW_KEYS = ['name', 'type', 'cached'] as const
export const CPU_OPS = [
  'read',
  'write',
  'write_fault',
  'cow_fault',
  'munmap',
  'madvise_dontneed',
  'mprotect',
  'fork',
  'ksm_merge',
  'migrate',
  'migrate_vma',
  'reclaim',
  'unmap_mapping_range',
  'writeback',
  'vmalloc',
  'vfree',
  'signal',
  'wait',
  'thp_split',
  'thp_collapse',
] as const
export const DEVICE_OPS = ['read', 'write', 'signal', 'wait'] as const
export const PAGE_KINDS = ['anon', 'pfnmap', 'file'] as const
/** The `kernel:` toggles (YAML names), each defaulting to v6.6 behaviour (true). */
export const KERNEL_KEYS = [
  'pfnmap_flush',
  'dirty_flush_under_ptl',
  'delay_rmap',
  'vtd_full_range_fix',
  'migrate_vma_flush_under_ptl',
  'collapse_notify',
  'gup_fast_ipi',
] as const
/** The keys of a huge page under `thp:`. */
export const THP_KEYS = ['pages', 'mapped', 'kind'] as const
/** CPU ops a scenario with a huge page may use (the rest are not modelled on a huge page). */
const THP_CPU_OPS: readonly string[] = ['read', 'write', 'thp_split', 'thp_collapse']

/** Levenshtein-based hint for a misspelt key or word. */
function didYouMean(word: string, options: readonly string[]): string {
  // A long token is no typo of a short name (and its edit distance would cost time).
  if (word.length > 64) return ''
  let best = ''
  let bestD = Infinity
  for (const o of options) {
    const d = editDistance(word.toLowerCase(), o.toLowerCase())
    if (d < bestD) {
      bestD = d
      best = o
    }
  }
  return bestD <= Math.max(2, Math.floor(word.length / 3)) ? ` (did you mean '${best}'?)` : ''
}

function editDistance(a: string, b: string): number {
  const d: number[] = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0]!
    d[0] = i
    for (let j = 1; j <= b.length; j++) {
      const tmp = d[j]!
      d[j] = Math.min(d[j]! + 1, d[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1))
      prev = tmp
    }
  }
  return d[b.length]!
}

class Issues {
  readonly list: ScenarioIssue[] = []
  add(path: Path, message: string, offset: number | null = null, length: number | null = null): void {
    this.list.push({ path: [...path], message, offset, length, at: 'value' })
  }
  key(path: Path, message: string): void {
    this.list.push({ path: [...path], message, offset: null, length: null, at: 'key' })
  }
}

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function checkKeys(o: Obj, allowed: readonly string[], path: Path, issues: Issues, what: string): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) {
      issues.key(
        [...path, k],
        `unknown key '${k}' in ${what}${didYouMean(k, allowed)}; allowed: ${allowed.join(', ')}`,
      )
    }
  }
}

function typeName(v: unknown): string {
  if (v === null || v === undefined) return 'nothing'
  if (Array.isArray(v)) return 'a list'
  return typeof v === 'object' ? 'a mapping' : `${typeof v} ${JSON.stringify(v)}`
}

function oneOf<T extends string>(
  v: unknown,
  options: readonly T[],
  path: Path,
  issues: Issues,
  what: string,
): T | null {
  if (typeof v === 'string' && (options as readonly string[]).includes(v)) return v as T
  const hint = typeof v === 'string' ? didYouMean(v, options) : ''
  issues.add(path, `${what} must be one of ${options.join(', ')}; found ${typeName(v)}${hint}`)
  return null
}

function int(
  v: unknown,
  path: Path,
  issues: Issues,
  what: string,
  min = Number.MIN_SAFE_INTEGER,
  max = Number.MAX_SAFE_INTEGER,
): number | null {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= min && v <= max) return v
  const range =
    max < Number.MAX_SAFE_INTEGER
      ? ` from ${min} to ${max}`
      : min > Number.MIN_SAFE_INTEGER
        ? ` >= ${min}`
        : ''
  issues.add(path, `${what} must be an integer${range}; found ${typeName(v)}`)
  return null
}

/** Memory values are 32-bit signed integers (what a litmus register holds here). */
const INT32_MIN = -2147483648
const INT32_MAX = 2147483647

function bool(v: unknown, path: Path, issues: Issues, what: string): boolean | null {
  if (typeof v === 'boolean') return v
  issues.add(path, `${what} must be true or false; found ${typeName(v)}`)
  return null
}

interface Word {
  readonly s: string
  readonly at: number
}
function words(s: string): Word[] {
  const out: Word[] = []
  const re = /\S+/g
  let m: RegExpExecArray | null
  while ((m = re.exec(s))) out.push({ s: m[0], at: m.index })
  return out
}

/** Validates a parsed scenario document. Throws `ScenarioError` listing every problem found. */
/**
 * Sizes the engine supports: threads and secondaries are sets of bits in 31-bit integers
 * (explore.ts masks, ctx.ts copy-on-write flags), so a larger scenario is refused with a
 * located error rather than explored with masks that wrap.
 */
export const SCENARIO_LIMITS = { threads: 31, secondaries: 31 } as const

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

  // Pages, in declaration order: page i sits at virtual address i * 4096 of one VMA region.
  const pages: PageDecl[] = []
  const pageIndex = new Map<string, number>()
  const hasKernelPages = isObj(raw.kernel_pages) && Object.keys(raw.kernel_pages).length > 0
  if (raw.pages === undefined && hasKernelPages) {
    // A scenario about kernel mappings only.
  } else if (!isObj(raw.pages) || Object.keys(raw.pages).length === 0) {
    issues.add(
      ['pages'],
      `pages is required: a mapping from page name to { value, prot, cow, mapped }; found ${typeName(raw.pages)}`,
    )
  } else {
    for (const [name, decl] of Object.entries(raw.pages)) {
      const path = ['pages', name]
      if (!NAME.test(name)) issues.key(path, `page name '${name}' must be an identifier (letters, digits, _)`)
      if (pageIndex.has(name)) issues.key(path, `page '${name}' is declared twice`)
      const d = decl === null || decl === undefined ? {} : decl
      if (!isObj(d)) {
        issues.add(
          path,
          `page '${name}' must be a mapping such as { value: 0, prot: rw }; found ${typeName(decl)}`,
        )
        continue
      }
      checkKeys(d, PAGE_KEYS, path, issues, `page '${name}'`)
      const value =
        d.value === undefined ? 0 : int(d.value, [...path, 'value'], issues, 'value', INT32_MIN, INT32_MAX)
      const prot =
        d.prot === undefined
          ? 'rw'
          : oneOf<Prot>(d.prot, ['rw', 'ro', 'none'], [...path, 'prot'], issues, 'prot')
      const cow = d.cow === undefined ? false : bool(d.cow, [...path, 'cow'], issues, 'cow')
      const kind =
        d.kind === undefined
          ? 'anon'
          : oneOf<PageDecl['kind']>(d.kind, PAGE_KINDS, [...path, 'kind'], issues, 'kind')
      if (kind === 'pfnmap' && cow)
        issues.add([...path, 'cow'], 'a pfnmap page is a shared device mapping: it cannot be cow')
      if (kind === 'file' && cow)
        issues.add(
          [...path, 'cow'],
          'a file page is a MAP_SHARED mapping: writes go to the page cache, never to a copy; it cannot be cow',
        )
      if (kind === 'pfnmap' && d.mapped === 'none')
        issues.add(
          [...path, 'mapped'],
          'a pfnmap page is mapped by the driver (remap_pfn_range) when the file is mmapped: it cannot start unmapped',
        )
      let mapped: Mapped | null =
        d.mapped === undefined
          ? prot === 'rw' && !cow
            ? 'rw'
            : prot === 'none'
              ? 'none'
              : 'ro'
          : oneOf<Mapped>(d.mapped, ['rw', 'ro', 'clean', 'none'], [...path, 'mapped'], issues, 'mapped')
      if (prot && mapped) {
        if ((mapped === 'rw' || mapped === 'clean') && prot !== 'rw') {
          issues.add(
            [...path, 'mapped'],
            `mapped: ${mapped} needs a writable VMA (prot: rw); this page has prot: ${prot}`,
          )
          mapped = null
        }
        if (prot === 'none' && mapped !== 'none') {
          issues.add(
            [...path, 'mapped'],
            'a prot: none page has no accessible PTE; use mapped: none or another prot',
          )
          mapped = null
        }
        if (cow && mapped !== 'ro') {
          issues.add(
            [...path, cow && d.mapped !== undefined ? 'mapped' : 'cow'],
            'cow: true pages are mapped read-only (mapped: ro) in the process and its fork child',
          )
          mapped = null
        }
        if (mapped === 'none' && value !== 0 && value !== null && kind !== 'file') {
          issues.add(
            [...path, 'value'],
            'a page that is not mapped yet reads as zero when faulted in; value must be 0',
          )
        }
      }
      if (value !== null && prot && cow !== null && mapped && kind) {
        pageIndex.set(name, pages.length)
        pages.push({ name, value, prot, cow, mapped, kind })
      } else {
        pageIndex.set(name, -1)
      }
    }
  }
  // Kernel pages: vmalloc addresses in init_mm, after the process's pages.
  if (raw.kernel_pages !== undefined) {
    if (!isObj(raw.kernel_pages)) {
      issues.add(
        ['kernel_pages'],
        `kernel_pages must be a mapping from page name to { value, mapped: rw | none }; found ${typeName(raw.kernel_pages)}`,
      )
    } else {
      if (arch === 'arm64' && Object.keys(raw.kernel_pages).length > 0)
        issues.add(
          ['kernel_pages'],
          'kernel mappings are modelled on x86_64 (flush_tlb_kernel_range, VT-d supervisor PASIDs; reference 5.12)',
        )
      for (const [name, decl] of Object.entries(raw.kernel_pages)) {
        const path = ['kernel_pages', name]
        if (!NAME.test(name))
          issues.key(path, `page name '${name}' must be an identifier (letters, digits, _)`)
        if (pageIndex.has(name))
          issues.key(path, `page '${name}' is declared twice (pages and kernel_pages share one namespace)`)
        const d = decl === null || decl === undefined ? {} : decl
        if (!isObj(d)) {
          issues.add(
            path,
            `kernel page '${name}' must be a mapping such as { value: 1 }; found ${typeName(decl)}`,
          )
          continue
        }
        checkKeys(d, KERNEL_PAGE_KEYS, path, issues, `kernel page '${name}'`)
        const value =
          d.value === undefined ? 0 : int(d.value, [...path, 'value'], issues, 'value', INT32_MIN, INT32_MAX)
        const mapped =
          d.mapped === undefined
            ? 'rw'
            : oneOf<'rw' | 'none'>(d.mapped, ['rw', 'none'], [...path, 'mapped'], issues, 'mapped')
        if (value !== null && mapped) {
          pageIndex.set(name, pages.length)
          pages.push({ name, value, prot: 'rw', cow: false, mapped, kind: 'kernel' })
        } else pageIndex.set(name, -1)
      }
    }
  }
  const pageRef = (n: string): number | null => {
    const i = pageIndex.get(n)
    return i === undefined || i < 0 ? null : i
  }

  const thp = parseThp(raw.thp, issues, pages, pageIndex)

  // Secondaries
  const secondaries: SecondaryDecl[] = []
  const secIndex = new Map<string, number>()
  const rawSec = raw.secondary === undefined ? [] : raw.secondary
  if (!Array.isArray(rawSec)) {
    issues.add(
      ['secondary'],
      `secondary must be a list of { name, type: hw-walker | sw-mirror, ... }; found ${typeName(rawSec)}`,
    )
  } else {
    rawSec.forEach((s, i) => {
      const path = ['secondary', i]
      if (i === SCENARIO_LIMITS.secondaries)
        issues.add(
          path,
          `too many secondaries: at most ${SCENARIO_LIMITS.secondaries} (this is secondary ${i + 1}); the engine keeps one bit per secondary`,
        )
      if (i >= SCENARIO_LIMITS.secondaries) return
      if (!isObj(s)) {
        issues.add(
          path,
          `each secondary must be a mapping such as { name: iommu, type: hw-walker }; found ${typeName(s)}`,
        )
        return
      }
      const type = oneOf<'hw-walker' | 'sw-mirror'>(
        s.type,
        ['hw-walker', 'sw-mirror'],
        [...path, 'type'],
        issues,
        'secondary type',
      )
      checkKeys(s, type === 'sw-mirror' ? SW_KEYS : HW_KEYS, path, issues, `secondary ${i}`)
      const name = typeof s.name === 'string' && NAME.test(s.name) ? s.name : null
      if (name === null)
        issues.add([...path, 'name'], `secondary name must be an identifier; found ${typeName(s.name)}`)
      else if (secIndex.has(name)) issues.add([...path, 'name'], `secondary '${name}' is declared twice`)
      const cached: number[] = []
      if (s.cached !== undefined) {
        if (!Array.isArray(s.cached))
          issues.add([...path, 'cached'], `cached must be a list of page names; found ${typeName(s.cached)}`)
        else
          s.cached.forEach((c, j) => {
            const pi = typeof c === 'string' ? pageRef(c) : null
            if (pi === null && typeof c === 'string' && pageIndex.get(c) === -1) return
            if (pi === null)
              issues.add(
                [...path, 'cached', j],
                `unknown page ${typeName(c)} in cached; pages are ${[...pageIndex.keys()].join(', ')}`,
              )
            else if (pages[pi]!.mapped === 'none')
              issues.add(
                [...path, 'cached', j],
                `page '${c}' has no PTE (mapped: none), so nothing can be cached for it`,
              )
            else if (cached.includes(pi)) issues.add([...path, 'cached', j], `page '${c}' is listed twice`)
            else cached.push(pi)
          })
      }
      if (name === null || type === null) return
      secIndex.set(name, secondaries.length)
      const kernelCached = cached.filter((pi) => pages[pi]!.kind === 'kernel')
      if (type === 'sw-mirror') {
        if (kernelCached.length > 0)
          issues.add(
            [...path, 'cached'],
            `a sw-mirror mirrors a process's address space; kernel page '${pages[kernelCached[0]!]!.name}' cannot be in it`,
          )
        secondaries.push({ type, name, cached })
        return
      }
      const pasid =
        s.pasid === undefined
          ? 'user'
          : oneOf<'user' | 'supervisor'>(s.pasid, ['user', 'supervisor'], [...path, 'pasid'], issues, 'pasid')
      if (pasid === 'supervisor' && arch === 'arm64')
        issues.add(
          [...path, 'pasid'],
          'supervisor PASIDs are modelled for x86_64 (VT-d); mainline SMMUv3 SVA binds user address spaces only',
        )
      if (kernelCached.length > 0 && pasid !== 'supervisor')
        issues.add(
          [...path, 'cached'],
          `kernel page '${pages[kernelCached[0]!]!.name}' can be cached only by a device with pasid: supervisor`,
        )
      const btm = s.btm === undefined ? false : bool(s.btm, [...path, 'btm'], issues, 'btm')
      if (btm && arch === 'x86_64')
        issues.add(
          [...path, 'btm'],
          'btm (broadcast TLB maintenance snooped by an SMMU) exists only on arm64',
        )
      const flushAt =
        s.flush_at === undefined
          ? 'both'
          : oneOf<FlushAt>(s.flush_at, ['start', 'end', 'both'], [...path, 'flush_at'], issues, 'flush_at')
      const retryLimit =
        s.retry_limit === undefined || s.retry_limit === null
          ? null
          : int(s.retry_limit, [...path, 'retry_limit'], issues, 'retry_limit', 1)
      const negativeCaching =
        s.negative_caching === undefined
          ? true
          : bool(s.negative_caching, [...path, 'negative_caching'], issues, 'negative_caching')
      const iommu =
        s.iommu === undefined
          ? arch === 'x86_64'
            ? 'vt-d'
            : 'smmu-v3'
          : oneOf<'smmu-v3' | 'vt-d' | 'amd-v2'>(
              s.iommu,
              ['smmu-v3', 'vt-d', 'amd-v2'],
              [...path, 'iommu'],
              issues,
              'iommu',
            )
      const ats = s.ats === undefined ? false : bool(s.ats, [...path, 'ats'], issues, 'ats')
      const atcOrder =
        s.atc_order === undefined
          ? 'iotlb-first'
          : oneOf<'iotlb-first' | 'atc-first'>(
              s.atc_order,
              ['iotlb-first', 'atc-first'],
              [...path, 'atc_order'],
              issues,
              'atc_order',
            )
      const walkCache =
        s.walk_cache === undefined ? false : bool(s.walk_cache, [...path, 'walk_cache'], issues, 'walk_cache')
      const leafOnly =
        s.leaf_only === undefined ? false : bool(s.leaf_only, [...path, 'leaf_only'], issues, 'leaf_only')
      if (leafOnly && walkCache !== true)
        issues.add(
          [...path, 'leaf_only'],
          'leaf_only says the driver never invalidates its walk cache: it needs walk_cache: true',
        )
      if (s.atc_order !== undefined && ats !== true)
        issues.add(
          [...path, 'atc_order'],
          'atc_order orders the IOTLB and ATC invalidations: it needs ats: true (a device ATC)',
        )
      secondaries.push({
        type,
        name,
        pasid: pasid ?? 'user',
        ats: ats ?? false,
        atcOrder: atcOrder ?? 'iotlb-first',
        iommu: iommu ?? 'vt-d',
        btm: btm ?? false,
        flushAt: flushAt ?? 'both',
        cached,
        retryLimit,
        negativeCaching: negativeCaching ?? true,
        walkCache: walkCache ?? false,
        leafOnly: leafOnly ?? false,
      })
    })
  }

  // Threads
  const threads: ThreadDecl[] = []
  let threadLimitReported = false
  const tooManyThreads = (path: Path): boolean => {
    if (threads.length < SCENARIO_LIMITS.threads) return false
    if (!threadLimitReported)
      issues.key(
        path,
        `too many threads: at most ${SCENARIO_LIMITS.threads} CPU and device threads together (this is thread ${threads.length + 1}); the explorer keeps one bit per thread`,
      )
    threadLimitReported = true
    return true
  }
  const registers: string[] = []
  const threadNames = new Set<string>()
  const regWriters = new Map<string, string>()
  let forks = 0
  const migrates: Array<{ path: Path; at: number; len: number; op: string }> = []
  const pageOps: Array<{
    path: Path
    at: number
    len: number
    op: string
    page: number
    thread: string
    kind: 'cpu' | 'device'
  }> = []
  const flags: string[] = []
  const signalled = new Set<string>()
  const waits: Array<{ path: Path; at: number; len: number; flag: string }> = []
  const parseOps = (
    list: unknown,
    path: Path,
    tname: string,
    kind: 'cpu' | 'device',
  ): { ops: Op[]; text: string[] } => {
    const ops: Op[] = []
    const text: string[] = []
    if (!Array.isArray(list)) {
      issues.add(
        path,
        `the ops of ${tname} must be a list of strings such as [write A 1]; found ${typeName(list)}`,
      )
      return { ops, text }
    }
    list.forEach((item, j) => {
      const p = [...path, j]
      if (typeof item !== 'string') {
        issues.add(p, `an op is a string such as 'read A -> r0'; found ${typeName(item)}`)
        return
      }
      const op = parseOp(item, p, kind, tname)
      if (op) {
        ops.push(op)
        text.push(item.trim())
      }
    })
    return { ops, text }
  }
  const pageWord = (w: Word | undefined, p: Path, opName: string, src: string): number | null => {
    if (!w) {
      issues.add(p, `${opName} needs a page name`, src.length, 1)
      return null
    }
    const i = pageRef(w.s)
    // A page declared with errors is already reported; do not cascade.
    if (i === null && pageIndex.get(w.s) !== -1) {
      issues.add(
        p,
        `unknown page '${w.s}'${didYouMean(w.s, [...pageIndex.keys()])}; pages are ${[...pageIndex.keys()].join(', ')}`,
        w.at,
        w.s.length,
      )
    }
    return i
  }
  const parseOp = (src: string, p: Path, kind: 'cpu' | 'device', tname: string): Op | null => {
    /** Remembers which page an op names, for the checks that need every thread parsed. */
    const notePageOp = (path: Path, w: Word, op: string, page: number): void => {
      pageOps.push({ path, at: w.at, len: w.s.length, op, page, thread: tname, kind })
    }
    const ws = words(src)
    const head = ws[0]
    const allowed: readonly string[] = kind === 'cpu' ? CPU_OPS : DEVICE_OPS
    if (!head) {
      issues.add(p, 'empty op')
      return null
    }
    if (!allowed.includes(head.s)) {
      const extra =
        kind === 'device' && (CPU_OPS as readonly string[]).includes(head.s)
          ? ' (devices only do read and write DMA)'
          : ''
      issues.add(
        p,
        `unknown ${kind} op '${head.s}'${didYouMean(head.s, allowed)}${extra}; expected one of ${allowed.join(', ')}`,
        head.at,
        head.s.length,
      )
      return null
    }
    const tooMany = (from: number): void => {
      const w = ws[from]
      if (w) issues.add(p, `unexpected '${w.s}' after ${head.s}`, w.at, w.s.length)
    }
    if (kind === 'cpu' && raw.thp !== undefined && !THP_CPU_OPS.includes(head.s)) {
      issues.add(
        p,
        `${head.s} is not modelled in a scenario with a huge page; its CPU ops are ${THP_CPU_OPS.join(', ')}`,
        head.at,
        head.s.length,
      )
      return null
    }
    switch (head.s) {
      case 'signal':
      case 'wait': {
        const w = ws[1]
        if (!w || !NAME.test(w.s)) {
          issues.add(
            p,
            `${head.s} needs a flag name, as in '${head.s} ready'`,
            w ? w.at : src.length,
            w ? w.s.length : 1,
          )
          return null
        }
        tooMany(2)
        if (!flags.includes(w.s)) flags.push(w.s)
        if (head.s === 'signal') signalled.add(w.s)
        else waits.push({ path: p, at: w.at, len: w.s.length, flag: w.s })
        return { kind: head.s, flag: flags.indexOf(w.s) }
      }
      case 'thp_split':
      case 'thp_collapse': {
        const w = ws[1]
        if (!w) {
          issues.add(p, `${head.s} needs the name of the huge page declared under thp:`, src.length, 1)
          return null
        }
        if (raw.thp === undefined) {
          issues.add(
            p,
            `unknown huge page '${w.s}': declare it under thp:, as in thp: { ${w.s}: { pages: [A, B] } }`,
            w.at,
            w.s.length,
          )
          return null
        }
        if (thp !== null && w.s !== thp.name) {
          issues.add(p, `unknown huge page '${w.s}'; the huge page is ${thp.name}`, w.at, w.s.length)
          return null
        }
        if (head.s === 'thp_split' && thp?.kind === 'file') {
          issues.add(
            p,
            'thp_split of a file/shmem huge page (__split_huge_pmd_locked zaps the PMD and the pages refault) is not modelled; only the anon split',
            head.at,
            head.s.length,
          )
          return null
        }
        tooMany(2)
        return thp === null ? null : { kind: head.s }
      }
      case 'vmalloc': {
        const page = pageWord(ws[1], p, 'vmalloc', src)
        let value: number | null = null
        const v = ws[2]
        if (v) {
          if (!/^-?\d+$/.test(v.s) || Number(v.s) < INT32_MIN || Number(v.s) > INT32_MAX) {
            issues.add(
              p,
              `vmalloc takes the new page's contents as an integer after the page, as in 'vmalloc K 2'`,
              v.at,
              v.s.length,
            )
            return null
          }
          value = Number(v.s)
          tooMany(3)
        }
        if (page !== null) notePageOp(p, ws[1]!, 'vmalloc', page)
        return page === null ? null : { kind: 'vmalloc', page, value: value ?? pages[page]!.value }
      }
      case 'read': {
        const page = pageWord(ws[1], p, 'read', src)
        let reg: number | null = null
        if (ws[2]) {
          if (ws[2].s !== '->') {
            issues.add(
              p,
              `expected '-> register' after the page, found '${ws[2].s}'`,
              ws[2].at,
              ws[2].s.length,
            )
            return null
          }
          const r = ws[3]
          if (!r || !NAME.test(r.s)) {
            issues.add(p, 'expected a register name after ->', r ? r.at : src.length, r ? r.s.length : 1)
            return null
          }
          if (regWriters.has(r.s)) {
            issues.add(
              p,
              `register '${r.s}' is already written by ${regWriters.get(r.s)}; each register is written once`,
              r.at,
              r.s.length,
            )
            return null
          }
          if (pageIndex.has(r.s)) {
            issues.add(p, `register '${r.s}' has the name of a page; pick another name`, r.at, r.s.length)
            return null
          }
          regWriters.set(r.s, tname)
          reg = registers.length
          registers.push(r.s)
          tooMany(4)
        }
        if (page !== null) notePageOp(p, ws[1]!, 'read', page)
        return page === null ? null : { kind: 'read', page, reg }
      }
      case 'write': {
        const page = pageWord(ws[1], p, 'write', src)
        const v = ws[2]
        if (!v || !/^-?\d+$/.test(v.s) || Number(v.s) < INT32_MIN || Number(v.s) > INT32_MAX) {
          issues.add(
            p,
            `write needs an integer value from ${INT32_MIN} to ${INT32_MAX} after the page, as in 'write A 1'`,
            v ? v.at : src.length,
            v ? v.s.length : 1,
          )
          return null
        }
        tooMany(3)
        if (page !== null) notePageOp(p, ws[1]!, 'write', page)
        return page === null ? null : { kind: 'write', page, value: Number(v.s) }
      }
      case 'write_fault':
      case 'cow_fault':
      case 'ksm_merge':
      case 'migrate':
      case 'migrate_vma':
      case 'reclaim':
      case 'unmap_mapping_range':
      case 'writeback':
      case 'vfree': {
        if (head.s === 'migrate' || head.s === 'migrate_vma' || head.s === 'reclaim')
          migrates.push({ path: p, at: head.at, len: head.s.length, op: head.s })
        const page = pageWord(ws[1], p, head.s, src)
        tooMany(2)
        if (page !== null) notePageOp(p, ws[1]!, head.s, page)
        return page === null ? null : { kind: head.s, page }
      }
      case 'munmap':
      case 'madvise_dontneed':
      case 'mprotect': {
        let rest = ws.slice(1)
        let prot: Prot | null = null
        if (head.s === 'mprotect') {
          const last = rest[rest.length - 1]
          if (!last || !['ro', 'rw', 'none'].includes(last.s)) {
            issues.add(
              p,
              "mprotect takes page names then the new protection: ro, rw or none, as in 'mprotect A ro'",
              last ? last.at : src.length,
              last ? last.s.length : 1,
            )
            return null
          }
          prot = last.s as Prot
          rest = rest.slice(0, -1)
        }
        if (rest.length === 0) {
          issues.add(p, `${head.s} needs at least one page`, src.length, 1)
          return null
        }
        const ps: number[] = []
        for (const w of rest) {
          const i = pageWord(w, p, head.s, src)
          if (i !== null && !ps.includes(i)) ps.push(i)
          if (i !== null) notePageOp(p, w, head.s, i)
        }
        if (ps.length !== rest.length) return null
        ps.sort((a, b) => a - b)
        if (head.s === 'mprotect') return { kind: 'mprotect', pages: ps, prot: prot! }
        return { kind: head.s as 'munmap', pages: ps }
      }
      case 'fork': {
        tooMany(1)
        forks++
        if (forks > 1) {
          issues.add(p, 'a scenario may fork once (one child address space)', head.at, head.s.length)
          return null
        }
        return { kind: 'fork' }
      }
    }
    return null
  }

  const hasCowPages = pages.some((pg) => pg.cow)
  const rawCpus = raw.cpus === undefined ? {} : raw.cpus
  if (!isObj(rawCpus))
    issues.add(
      ['cpus'],
      `cpus must be a mapping from thread name to a list of ops; found ${typeName(rawCpus)}`,
    )
  else
    for (const [tname, body] of Object.entries(rawCpus)) {
      const path = ['cpus', tname]
      if (!NAME.test(tname)) issues.key(path, `thread name '${tname}' must be an identifier`)
      if (threadNames.has(tname)) issues.key(path, `thread '${tname}' is declared twice`)
      threadNames.add(tname)
      let mm: 0 | 1 = 0
      let opsRaw: unknown = body
      let opsPath: Path = path
      if (isObj(body)) {
        checkKeys(body, ['mm', 'ops'], path, issues, `cpu thread '${tname}'`)
        if (body.mm !== undefined) {
          const m = oneOf<'process' | 'child'>(body.mm, ['process', 'child'], [...path, 'mm'], issues, 'mm')
          mm = m === 'child' ? 1 : 0
        }
        opsRaw = body.ops
        opsPath = [...path, 'ops']
      }
      const { ops, text } = parseOps(opsRaw, opsPath, tname, 'cpu')
      if (tooManyThreads(path)) continue
      threads.push({ name: tname, kind: 'cpu', mm, via: -1, ops, opText: text })
    }
  const rawDev = raw.devices === undefined ? {} : raw.devices
  if (!isObj(rawDev))
    issues.add(
      ['devices'],
      `devices must be a mapping from thread name to { via, ops }; found ${typeName(rawDev)}`,
    )
  else
    for (const [tname, body] of Object.entries(rawDev)) {
      const path = ['devices', tname]
      if (!NAME.test(tname)) issues.key(path, `thread name '${tname}' must be an identifier`)
      if (threadNames.has(tname))
        issues.key(path, `thread '${tname}' is declared twice (cpu and device threads share one namespace)`)
      threadNames.add(tname)
      if (!isObj(body)) {
        issues.add(path, `a device thread is { via: <secondary>, ops: [...] }; found ${typeName(body)}`)
        continue
      }
      checkKeys(body, ['via', 'ops'], path, issues, `device thread '${tname}'`)
      const via = typeof body.via === 'string' ? secIndex.get(body.via) : undefined
      if (via === undefined) {
        issues.add(
          [...path, 'via'],
          `via must name a secondary (${[...secIndex.keys()].join(', ') || 'none declared'}); found ${typeName(body.via)}`,
        )
      }
      const { ops, text } = parseOps(body.ops, [...path, 'ops'], tname, 'device')
      if (tooManyThreads(path)) continue
      if (via !== undefined) threads.push({ name: tname, kind: 'device', mm: 0, via, ops, opText: text })
    }
  if (threadNames.size === 0) issues.add([], 'a scenario needs at least one thread under cpus or devices')
  const childThreads = threads.filter((t) => t.mm === 1)
  if (childThreads.length > 0 && !hasCowPages && forks === 0) {
    issues.add(
      ['cpus', childThreads[0]!.name, 'mm'],
      'mm: child needs a fork child: a fork op or a cow: true page',
    )
  }
  for (const o of pageOps) {
    const pfnmap = pages[o.page]?.kind === 'pfnmap'
    const file = pages[o.page]?.kind === 'file'
    if (o.op === 'unmap_mapping_range' && !pfnmap)
      issues.add(
        o.path,
        `unmap_mapping_range revokes a driver's pfnmap mapping; page '${pages[o.page]!.name}' is ${pages[o.page]!.kind}`,
        o.at,
        o.len,
      )
    if (o.op === 'writeback' && !file)
      issues.add(
        o.path,
        `writeback writes a file page's page-cache folio to disk; page '${pages[o.page]!.name}' is ${pages[o.page]!.kind} (declare it kind: file)`,
        o.at,
        o.len,
      )
    if (file && ['cow_fault', 'ksm_merge', 'migrate', 'migrate_vma', 'reclaim'].includes(o.op))
      issues.add(
        o.path,
        `${o.op} of a file page is not modelled (${o.op === 'cow_fault' ? 'a MAP_SHARED file page never breaks COW' : 'only anon pages'}); '${pages[o.page]!.name}' is kind: file`,
        o.at,
        o.len,
      )
    if (pfnmap && ['cow_fault', 'ksm_merge', 'migrate', 'migrate_vma', 'reclaim'].includes(o.op))
      issues.add(
        o.path,
        `${o.op} works on anon pages; '${pages[o.page]!.name}' is a pfnmap page (no struct page)`,
        o.at,
        o.len,
      )
  }
  // Kernel pages: only loads, stores, vmalloc and vfree; one owner thread per page, vmalloc and
  // vfree alternating from the page's initial state; device access needs a supervisor PASID.
  const vmOwner = new Map<number, string>()
  const vmMapped = new Map<number, boolean>()
  for (const o of pageOps) {
    const pg = pages[o.page]!
    const isKernel = pg.kind === 'kernel'
    if (o.op === 'vmalloc' || o.op === 'vfree') {
      if (!isKernel) {
        issues.add(
          o.path,
          `${o.op} maps or unmaps a kernel vmalloc address; '${pg.name}' is a process page (declare it under kernel_pages)`,
          o.at,
          o.len,
        )
        continue
      }
      const owner = vmOwner.get(o.page)
      if (owner !== undefined && owner !== o.thread) {
        issues.add(
          o.path,
          `kernel page '${pg.name}' is vmalloc'ed and vfree'd by ${owner} already; one thread owns an allocation`,
          o.at,
          o.len,
        )
        continue
      }
      vmOwner.set(o.page, o.thread)
      const mapped = vmMapped.get(o.page) ?? pg.mapped !== 'none'
      if (o.op === 'vfree' && !mapped)
        issues.add(
          o.path,
          `vfree ${pg.name}: it is not mapped at this point (vfree'd before, or mapped: none); vmalloc it first`,
          o.at,
          o.len,
        )
      if (o.op === 'vmalloc' && mapped)
        issues.add(o.path, `vmalloc ${pg.name}: the address is still in use; vfree it first`, o.at, o.len)
      vmMapped.set(o.page, o.op === 'vmalloc')
      continue
    }
    if (!isKernel) continue
    if (o.op !== 'read' && o.op !== 'write') {
      issues.add(
        o.path,
        `${o.op} works on process memory; '${pg.name}' is a kernel page (only read, write, vmalloc and vfree)`,
        o.at,
        o.len,
      )
      continue
    }
    if (o.kind === 'device') {
      const th = threads.find((t) => t.name === o.thread)
      const sec = th ? secondaries[th.via] : undefined
      if (sec && (sec.type !== 'hw-walker' || sec.pasid !== 'supervisor'))
        issues.add(
          o.path,
          `${o.thread} reaches kernel page '${pg.name}' through ${sec.name}, which has ${sec.type === 'hw-walker' ? 'pasid: user' : 'no kernel mappings (sw-mirror)'}; kernel addresses need a hw-walker with pasid: supervisor`,
          o.at,
          o.len,
        )
    }
  }
  for (const w of waits) {
    if (!signalled.has(w.flag))
      issues.add(w.path, `nothing signals '${w.flag}': add 'signal ${w.flag}' to another thread`, w.at, w.len)
  }
  if (forks > 0 && pages.some((pg) => pg.kind === 'pfnmap')) {
    issues.add(['pages'], 'fork with pfnmap pages is not modelled yet')
  }
  if (forks > 0 && pages.some((pg) => pg.kind === 'file')) {
    issues.add(
      ['pages'],
      'fork with file pages is not modelled yet (the child would map the same page-cache folio; folio_mkclean would have to walk it too)',
    )
  }
  if (forks > 0 || hasCowPages) {
    for (const m of migrates) {
      issues.add(
        m.path,
        `${m.op} in a scenario with a fork child is not modelled yet (the rmap walk would have to cover the child mapping too)`,
        m.at,
        m.len,
      )
    }
  }
  if (forks > 0 && hasCowPages) {
    issues.add(
      ['pages'],
      'cow: true pages already imply a fork child; a scenario with cow pages cannot fork again',
    )
  }

  // forbid
  let forbid: Expr | null = null
  let forbidText: string | null = null
  if (raw.forbid !== undefined) {
    if (typeof raw.forbid !== 'string')
      issues.add(
        ['forbid'],
        `forbid must be a condition such as 'r1 == 1 && r0 == 0'; found ${typeName(raw.forbid)}`,
      )
    else {
      forbidText = raw.forbid
      const r = parseExpr(raw.forbid, {
        register: (n) => {
          const i = registers.indexOf(n)
          return i < 0 ? null : i
        },
        page: pageRef,
        file: (i) => pages[i]?.kind === 'file',
      })
      if ('message' in r) issues.add(['forbid'], r.message, r.offset, r.length)
      else forbid = r
    }
  }

  // expect
  const expect: Array<[string, Expectation]> = []
  if (raw.expect !== undefined) {
    if (!isObj(raw.expect))
      issues.add(
        ['expect'],
        `expect must map policies to verdicts, as in { start-end: violated }; found ${typeName(raw.expect)}`,
      )
    else
      for (const [k, v] of Object.entries(raw.expect)) {
        const pol = parsePolicy(k)
        if (typeof pol === 'string') {
          issues.key(['expect', k], pol)
          continue
        }
        const options = ['holds', 'violated', ...INVARIANTS]
        const e = oneOf<Expectation>(v, options as Expectation[], ['expect', k], issues, 'an expectation')
        if (e === 'forbid' && forbid === null)
          issues.add(['expect', k], "expecting 'forbid' needs a forbid condition")
        if (expect.some(([n]) => n === pol.name))
          issues.key(['expect', k], `policy ${pol.name} is listed twice`)
        if (e) expect.push([pol.name, e])
      }
  }

  // expect_metrics: what a policy's metrics must show (a correct policy's cost, a saving)
  const expectMetrics: Array<[string, MetricExpectation[]]> = []
  if (raw.expect_metrics !== undefined) {
    if (!isObj(raw.expect_metrics))
      issues.add(
        ['expect_metrics'],
        `expect_metrics maps policies to metric bounds, as in { arch-hook: { full_invalidations: '>= 1' } }; found ${typeName(raw.expect_metrics)}`,
      )
    else
      for (const [k, v] of Object.entries(raw.expect_metrics)) {
        const pol = parsePolicy(k)
        if (typeof pol === 'string') {
          issues.key(['expect_metrics', k], pol)
          continue
        }
        if (!isObj(v)) {
          issues.add(
            ['expect_metrics', k],
            `the metrics of ${pol.name} are a mapping such as { mirror_zaps: 0, full_invalidations: '>= 1' }; found ${typeName(v)}`,
          )
          continue
        }
        checkKeys(v, METRIC_NAMES, ['expect_metrics', k], issues, `expect_metrics.${k}`)
        const list: MetricExpectation[] = []
        for (const [m, want] of Object.entries(v)) {
          if (!(METRIC_NAMES as readonly string[]).includes(m)) continue
          const path = ['expect_metrics', k, m]
          if (typeof want === 'number' && Number.isInteger(want) && want >= 0) {
            list.push({ metric: m as MetricName, op: '==', value: want })
            continue
          }
          const mt = typeof want === 'string' ? /^\s*(==|>=|<=|>|<)\s*(\d+)\s*$/.exec(want) : null
          if (!mt) {
            issues.add(
              path,
              `${m} must be a count (0, 3) or a bound such as '>= 1', '< 5'; found ${typeName(want)}`,
            )
            continue
          }
          list.push({ metric: m as MetricName, op: mt[1] as MetricExpectation['op'], value: Number(mt[2]) })
        }
        if (expectMetrics.some(([n]) => n === pol.name))
          issues.key(['expect_metrics', k], `policy ${pol.name} is listed twice`)
        else if (!expect.some(([n]) => n === pol.name))
          issues.key(
            ['expect_metrics', k],
            `${pol.name} has metrics to check but no verdict: add it to expect too (the check runs the policies of expect)`,
          )
        else expectMetrics.push([pol.name, list])
      }
  }

  let gatherBatch: number | null = null
  if (raw.mmu_gather !== undefined) {
    if (!isObj(raw.mmu_gather))
      issues.add(
        ['mmu_gather'],
        `mmu_gather must be a mapping such as { batch: 2 }; found ${typeName(raw.mmu_gather)}`,
      )
    else {
      checkKeys(raw.mmu_gather, ['batch'], ['mmu_gather'], issues, 'mmu_gather')
      if (raw.mmu_gather.batch !== undefined && raw.mmu_gather.batch !== null) {
        gatherBatch = int(raw.mmu_gather.batch, ['mmu_gather', 'batch'], issues, 'mmu_gather.batch', 1)
      }
    }
  }

  const explore: ExploreDecl = parseExplore(raw.explore, issues, threadNames)

  let pfnmapFlush = true
  let dirtyFlushUnderPtl = true
  let delayRmap = true
  let vtdFullRangeFix = true
  let migrateVmaFlushUnderPtl = true
  let collapseNotify = true
  let gupFastIpi = true
  if (raw.kernel !== undefined) {
    if (!isObj(raw.kernel))
      issues.add(
        ['kernel'],
        `kernel must be a mapping of toggles such as { pfnmap_flush: false }; found ${typeName(raw.kernel)}`,
      )
    else {
      const k = raw.kernel
      checkKeys(k, KERNEL_KEYS, ['kernel'], issues, 'kernel')
      const toggle = (key: (typeof KERNEL_KEYS)[number]): boolean | null =>
        k[key] === undefined ? null : bool(k[key], ['kernel', key], issues, `kernel.${key}`)
      pfnmapFlush = toggle('pfnmap_flush') ?? true
      vtdFullRangeFix = toggle('vtd_full_range_fix') ?? true
      migrateVmaFlushUnderPtl = toggle('migrate_vma_flush_under_ptl') ?? true
      const dirty = toggle('dirty_flush_under_ptl')
      const delay = toggle('delay_rmap')
      dirtyFlushUnderPtl = dirty ?? true
      collapseNotify = toggle('collapse_notify') ?? true
      gupFastIpi = toggle('gup_fast_ipi') ?? true
      if (k.collapse_notify !== undefined && thp?.kind !== 'file')
        issues.add(
          ['kernel', 'collapse_notify'],
          'collapse_notify (f268f6cf875f) concerns the file/shmem collapse path: it needs a huge page with kind: file under thp:',
        )
      // The kernel before 1cf35d47712d had no delayed rmap either: delay_rmap follows it.
      delayRmap = delay ?? dirtyFlushUnderPtl
      if (delay === true && dirty === false)
        issues.add(
          ['kernel', 'delay_rmap'],
          'delay_rmap (5df397dec7c4, 2022) delays page_remove_rmap until the flush that 1cf35d47712d (2014) forces under the PTL; it needs dirty_flush_under_ptl: true',
        )
    }
  }

  const costs: Record<string, number> = {}
  if (raw.costs !== undefined) {
    if (!isObj(raw.costs))
      issues.add(
        ['costs'],
        `costs must map cost-table keys to nanoseconds, as in { iopf: 700000 }; found ${typeName(raw.costs)}`,
      )
    else
      for (const [k, v] of Object.entries(raw.costs)) {
        if (!(COST_KEYS as readonly string[]).includes(k)) {
          issues.key(
            ['costs', k],
            `unknown cost '${k}'${didYouMean(k, COST_KEYS)}; keys are ${COST_KEYS.join(', ')}`,
          )
          continue
        }
        const ns = int(v, ['costs', k], issues, `costs.${k} (ns)`, 0)
        if (ns !== null) costs[k] = ns
      }
  }

  if (issues.list.length > 0) throw new ScenarioError(issues.list)
  return {
    title,
    source,
    arch: arch!,
    pages,
    secondaries,
    threads,
    registers,
    forbid,
    forbidText,
    expect,
    gatherBatch,
    explore,
    costs,
    kernel: {
      pfnmapFlush,
      dirtyFlushUnderPtl,
      delayRmap,
      vtdFullRangeFix,
      migrateVmaFlushUnderPtl,
      collapseNotify,
      gupFastIpi,
    },
    expectMetrics,
    flags,
    thp,
  }
}

/**
 * `thp: { H: { pages: [A, B], mapped: pmd | pte, kind: anon | file } }` (or `H: [A, B]`): one
 * huge page whose subpages are all the scenario's pages, 2 to 4 of them, in declaration order.
 */
function parseThp(
  raw: unknown,
  issues: Issues,
  pages: readonly PageDecl[],
  pageIndex: ReadonlyMap<string, number>,
): ThpDecl | null {
  if (raw === undefined) return null
  if (!isObj(raw) || Object.keys(raw).length !== 1) {
    issues.add(
      ['thp'],
      `thp must map one huge page name to its subpages, as in thp: { H: { pages: [A, B] } }; found ${isObj(raw) ? `${Object.keys(raw).length} huge pages` : typeName(raw)}`,
    )
    return null
  }
  const [name, body] = Object.entries(raw)[0]!
  const path = ['thp', name]
  if (!NAME.test(name)) {
    issues.key(path, `huge page name '${name}' must be an identifier`)
    return null
  }
  if (pageIndex.has(name)) {
    issues.key(path, `huge page '${name}' has the name of a page; name it apart from its subpages`)
    return null
  }
  const d: Obj | null = Array.isArray(body) ? { pages: body } : isObj(body) ? body : null
  if (d === null) {
    issues.add(path, `huge page '${name}' must be { pages: [A, B], mapped, kind }; found ${typeName(body)}`)
    return null
  }
  checkKeys(d, THP_KEYS, path, issues, `huge page '${name}'`)
  const pPath = Array.isArray(body) ? path : [...path, 'pages']
  const mapped =
    d.mapped === undefined
      ? 'pmd'
      : oneOf<'pmd' | 'pte'>(d.mapped, ['pmd', 'pte'], [...path, 'mapped'], issues, 'mapped')
  const kind =
    d.kind === undefined
      ? 'anon'
      : oneOf<'anon' | 'file'>(d.kind, ['anon', 'file'], [...path, 'kind'], issues, 'kind')
  if (!Array.isArray(d.pages)) {
    issues.add(pPath, `pages must list the huge page's subpages, as in [A, B]; found ${typeName(d.pages)}`)
    return null
  }
  const sub: number[] = []
  let ok = true
  d.pages.forEach((w, j) => {
    const i = typeof w === 'string' ? pageIndex.get(w) : undefined
    if (i === undefined) {
      issues.add(
        [...pPath, j],
        `unknown page ${typeName(w)} in the huge page; pages are ${[...pageIndex.keys()].join(', ')}`,
      )
      ok = false
      return
    }
    if (i < 0) {
      ok = false
      return
    }
    if (sub.includes(i)) {
      issues.add([...pPath, j], `page '${w as string}' is listed twice`)
      ok = false
      return
    }
    const pg = pages[i]!
    if (pg.kind !== 'anon' || pg.prot !== 'rw' || pg.cow || pg.mapped !== 'rw') {
      issues.add(
        [...pPath, j],
        `a subpage of a huge page is modelled as anon memory mapped read-write (prot: rw, mapped: rw, not cow); '${pg.name}' is not`,
      )
      ok = false
      return
    }
    if (sub.length > 0 && i !== sub[sub.length - 1]! + 1) {
      issues.add(
        [...pPath, j],
        `the subpages of a huge page are adjacent pages in declaration order; '${pg.name}' is not next`,
      )
      ok = false
      return
    }
    sub.push(i)
  })
  if (!ok) return null
  if (sub.length < 2 || sub.length > 4) {
    issues.add(pPath, `a huge page is modelled with 2 to 4 subpages (standing for 512); found ${sub.length}`)
    return null
  }
  if (sub.length !== pages.length) {
    const others = pages.filter((_, i) => !sub.includes(i)).map((p) => p.name)
    issues.add(
      pPath,
      `every page of a scenario with a huge page is one of its subpages (one PMD range); ${others.join(', ')} ${others.length > 1 ? 'are' : 'is'} not`,
    )
    return null
  }
  if (mapped === null || kind === null) return null
  return { name, pages: sub, mapped, kind }
}

function parseExplore(raw: unknown, issues: Issues, threadNames: Set<string>): ExploreDecl {
  const none: ExploreDecl = { mode: null, seed: null, executions: null, schedule: null, maxStates: null }
  if (raw === undefined) return none
  if (!isObj(raw)) {
    issues.add(
      ['explore'],
      `explore must be a mapping such as { mode: random, seed: 1, executions: 100 }; found ${typeName(raw)}`,
    )
    return none
  }
  checkKeys(raw, ['mode', 'seed', 'executions', 'schedule', 'max_states'], ['explore'], issues, 'explore')
  const mode =
    raw.mode === undefined
      ? null
      : oneOf(
          raw.mode,
          ['exhaustive', 'random', 'scripted'] as const,
          ['explore', 'mode'],
          issues,
          'explore.mode',
        )
  const seed = raw.seed === undefined ? null : int(raw.seed, ['explore', 'seed'], issues, 'explore.seed', 0)
  const executions =
    raw.executions === undefined
      ? null
      : int(raw.executions, ['explore', 'executions'], issues, 'explore.executions', 1)
  const maxStates =
    raw.max_states === undefined
      ? null
      : int(raw.max_states, ['explore', 'max_states'], issues, 'explore.max_states', 1)
  let schedule: string[] | null = null
  if (raw.schedule !== undefined) {
    const s = raw.schedule
    const list = typeof s === 'string' ? s.split(/[\s,]+/).filter(Boolean) : Array.isArray(s) ? s : null
    if (!list || !list.every((x) => typeof x === 'string')) {
      issues.add(['explore', 'schedule'], `schedule must be a list of thread names; found ${typeName(s)}`)
    } else {
      list.forEach((n, i) => {
        if (!threadNames.has(n as string))
          issues.add(
            Array.isArray(s) ? ['explore', 'schedule', i] : ['explore', 'schedule'],
            `unknown thread '${n}' in schedule`,
          )
      })
      schedule = list as string[]
    }
  }
  if (mode === 'scripted' && (schedule === null || schedule.length === 0) && raw.schedule === undefined)
    issues.add(
      ['explore', 'mode'],
      'mode: scripted needs a schedule: explore: { mode: scripted, schedule: [C0, D0, ...] }',
    )
  else if (mode === 'scripted' && schedule !== null && schedule.length === 0)
    issues.add(['explore', 'schedule'], 'mode: scripted needs a schedule with at least one step')
  return { mode, seed, executions, schedule, maxStates }
}
