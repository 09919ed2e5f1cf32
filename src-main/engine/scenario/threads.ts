/**
 * `cpus:` and `devices:`: the threads and their ops (op strings parsed word by word, with
 * offsets), registers, signal/wait flags, and the checks that need every thread at once (kernel
 * page owners, fork and cow, waits without a signal).
 */
import {
  checkKeys,
  didYouMean,
  INT32_MAX,
  INT32_MIN,
  isObj,
  Issues,
  NAME,
  oneOf,
  SCENARIO_LIMITS,
  typeName,
  words,
  type Obj,
  type Path,
  type Word,
} from './common'
import type { MigrateMode, Op, PageDecl, Prot, SecondaryDecl, ThpDecl, ThreadDecl } from '../types'
import { MIGRATE_MODES } from '../types'

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
  'exit',
  'oom_reap',
  'truncate',
  'mremap',
] as const
export const DEVICE_OPS = ['read', 'write', 'signal', 'wait', 'translate'] as const
/** The keys of a CPU thread written as a mapping (`{ mm: child, ops: [...] }`) and of a device thread. */
export const CPU_THREAD_KEYS = ['mm', 'ops'] as const
export const DEVICE_THREAD_KEYS = ['via', 'ops'] as const
/**
 * CPU ops on a subpage of a huge page, and ops on the whole mm in a scenario with one (the rest
 * are not modelled on a huge page; a small page beside the huge pages takes every op).
 */
export const THP_CPU_OPS: readonly string[] = [
  'read',
  'write',
  'write_fault',
  'cow_fault',
  'fork',
  'ksm_merge',
  'migrate_vma',
  'thp_split',
  'thp_collapse',
  'mprotect',
  'munmap',
  'madvise_dontneed',
  'reclaim',
  'migrate',
  'exit',
  'oom_reap',
  'signal',
  'wait',
]
/** Why each other CPU op is refused in a scenario with a huge page. */
const THP_REFUSED: Readonly<Record<string, string>> = {
  mremap:
    'move_huge_pmd() moves a whole huge PMD to a target PMD range with no mapping, and split_huge_pmd() comes first for part of one: not modelled; mremap between small pages is',
  unmap_mapping_range: 'it revokes a pfnmap page, and a subpage is anon',
  writeback: 'it needs a file page, and a subpage is anon',
  truncate: 'it needs a file page, and a subpage is anon',
  vmalloc: 'it needs a kernel page, and a subpage is anon',
  vfree: 'it needs a kernel page, and a subpage is anon',
}
/** Why these ops are refused on a subpage of a `kind: file` huge page (a page-cache page). */
const THP_FILE_OTHER: Readonly<Record<string, string>> = {
  writeback:
    "writeback of the large folio would write-protect the huge PMD (folio_mkclean's page_vma_mkclean_one at PMD level), which the model's writeback of small file pages does not do",
  truncate:
    "a truncate below a later subpage cuts the large folio in the middle (truncate_inode_partial_folio splits it with split_folio); truncate below the huge page's first subpage drops the whole folio",
}
/**
 * The ops of a fork child's threads in a scenario with a huge page: faults and zaps on its huge
 * PMD, and the ops that act on the child's own mm (c.mmIndex): thp_split and mprotect of its
 * huge PMD, and reclaim, migrate, ksm_merge and migrate_vma of the huge folio it maps (their
 * rmap walks visit the process's VMA and the child's, kernel/thpRmap.ts). Not thp_collapse
 * (khugepaged's collapse is modelled on the process's mm only), nor fork, exit and oom_reap,
 * which act on the process.
 */
const THP_CHILD_OPS: readonly string[] = [
  'read',
  'write',
  'write_fault',
  'cow_fault',
  'munmap',
  'madvise_dontneed',
  'mprotect',
  'thp_split',
  'reclaim',
  'migrate',
  'ksm_merge',
  'migrate_vma',
  'signal',
  'wait',
]
/**
 * Ops that lock the huge folio (reclaim and migration isolate it; ksm_merge and migrate_vma hold
 * the folio lock across split_huge_page): one thread, and with thp_collapse only on a `mapped:
 * pte` huge page collapsed once (checkThpIsolations).
 */
const THP_FOLIO_LOCKERS: readonly string[] = ['reclaim', 'migrate', 'ksm_merge', 'migrate_vma']
/**
 * CPU ops refused on a subpage of a `kind: file` (shmem) huge page, and why: the split, the zap,
 * mprotect, exit and the OOM reaper act on a file PMD (kernel/thp.ts splitFilePmd, zapHugePmd),
 * these act on the large page-cache folio itself.
 */
const THP_FILE_REFUSED: Readonly<Record<string, string>> = {
  reclaim:
    'shmem reclaim splits the large page-cache folio first (shmem_writepage: split_huge_page) and swaps each subpage out through the swap cache; neither is modelled',
  migrate:
    "the large page-cache folio would move with try_to_migrate over the file's i_mmap tree (set_pmd_migration_entry) and folio_migrate_mapping of the whole folio; the model migrates an anon huge page or a small file page",
  ksm_merge:
    'KSM merges anonymous pages only: a MAP_SHARED shmem VMA never becomes VM_MERGEABLE (vma_ksm_compatible refuses VM_SHARED)',
  migrate_vma:
    'migrate_vma_pages() moves only anonymous memory to device-private memory ("For now only support anonymous memory migrating to device private or coherent memory"): a page-cache page keeps MIGRATE_PFN_MIGRATE cleared',
}

export interface ThreadsSection {
  readonly threads: ThreadDecl[]
  readonly registers: string[]
  readonly threadNames: Set<string>
  readonly flags: string[]
}

export function parseThreads(
  raw: Obj,
  issues: Issues,
  pages: readonly PageDecl[],
  pageIndex: ReadonlyMap<string, number>,
  pageRef: (n: string) => number | null,
  thp: readonly ThpDecl[],
  secondaries: readonly SecondaryDecl[],
  secIndex: ReadonlyMap<string, number>,
): ThreadsSection {
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
  /** `migrate_vma P owner M` ops: M's driver migrates the process's memory, not the fork child's. */
  const ownerOps: Array<{ path: Path; at: number; len: number; thread: string; sec: string }> = []
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
  const exits: Array<{ path: Path; at: number; len: number; op: string; thread: string }> = []
  /** folio-locking ops of a subpage (THP_FOLIO_LOCKERS), and thp_collapse ops, with their huge page `hp`. */
  const thpIsolations: ThpOpNote[] = []
  const thpCollapses: ThpOpNote[] = []
  /** The CPU ops on a huge page (a subpage, or the whole mm): checked against the fork child's limits. */
  const thpCpuOps: ThpOpNote[] = []
  const signalled = new Set<string>()
  const waits: Array<{ path: Path; at: number; len: number; flag: string }> = []
  /** The secondary of the device thread whose ops are being parsed. */
  let devVia: number | undefined
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
  /**
   * An op, then the huge-page rules (scenario with `thp:`): an op that names a subpage of a huge
   * page (or, with no page, acts on the whole mm) must be one of THP_CPU_OPS, and anon-only on
   * a kind: file huge page; ops on small pages beside the huge pages are not restricted.
   */
  const parseOp = (src: string, p: Path, kind: 'cpu' | 'device', tname: string): Op | null => {
    const op = parseOpWords(src, p, kind, tname)
    if (op === null || kind !== 'cpu' || thp.length === 0) return op
    const head = words(src)[0]!
    if (op.kind === 'thp_collapse')
      thpCollapses.push({ path: p, at: head.at, len: head.s.length, op: op.kind, thread: tname, hp: op.hp })
    const named = opPages(op, thp)
    const huge = named === null ? [...thp] : thp.filter((h) => named.some((q) => h.pages.includes(q)))
    if (huge.length === 0) return op
    const sub = named?.find((q) => huge[0]!.pages.includes(q))
    // truncate below a file huge page's first subpage drops the whole large folio
    // (truncate_inode_folio); below a later one it would split it (see THP_FILE_OTHER).
    const wholeTruncate = op.kind === 'truncate' && huge[0]!.kind === 'file' && sub === huge[0]!.pages[0]
    if (!THP_CPU_OPS.includes(op.kind) && !wholeTruncate) {
      const why = (huge[0]!.kind === 'file' ? THP_FILE_OTHER[op.kind] : undefined) ?? THP_REFUSED[op.kind]
      const reason = why ? ` (${why})` : ''
      issues.add(
        p,
        sub === undefined
          ? `${op.kind} is not modelled in a scenario with a huge page${reason}; its CPU ops are ${THP_CPU_OPS.join(', ')}`
          : `${op.kind} of ${pages[sub]!.name}, a subpage of huge page ${huge[0]!.name}, is not modelled${reason}; the CPU ops on a subpage are ${THP_CPU_OPS.join(', ')} (a small page beside the huge pages takes every op)`,
        head.at,
        head.s.length,
      )
      return null
    }
    const file = huge.find((h) => h.kind === 'file')
    const fileWhy = THP_FILE_REFUSED[op.kind]
    if (fileWhy !== undefined && file) {
      issues.add(
        p,
        `${op.kind} of a file (shmem) huge page${thp.length > 1 ? ` (${file.name})` : ''} is not modelled: ${fileWhy}`,
        head.at,
        head.s.length,
      )
      return null
    }
    const hpIndex = thp.indexOf(huge[0]!)
    const note = { path: p, at: head.at, len: head.s.length, op: op.kind, thread: tname, hp: hpIndex }
    if (THP_FOLIO_LOCKERS.includes(op.kind) && sub !== undefined) thpIsolations.push(note)
    thpCpuOps.push(note)
    return op
  }
  const parseOpWords = (src: string, p: Path, kind: 'cpu' | 'device', tname: string): Op | null => {
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
          ? ' (devices do DMA reads and writes and ATS translation requests)'
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
        const hp = thp.findIndex((h) => h.name === w.s)
        if (thp.length > 0 && hp < 0) {
          issues.add(
            p,
            `unknown huge page '${w.s}'${didYouMean(
              w.s,
              thp.map((h) => h.name),
            )}; the huge ${thp.length > 1 ? 'pages are' : 'page is'} ${thp.map((h) => h.name).join(', ')}`,
            w.at,
            w.s.length,
          )
          return null
        }
        tooMany(2)
        return hp < 0 ? null : { kind: head.s, hp }
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
      case 'migrate': {
        // migrate P [async|sync_light|sync]: the migrate_mode of migrate_pages() (default async).
        const page = pageWord(ws[1], p, head.s, src)
        const m = ws[2]
        if (m && !(MIGRATE_MODES as readonly string[]).includes(m.s)) {
          issues.add(
            p,
            `migrate takes a page, then optionally a migrate_mode: ${MIGRATE_MODES.join(', ')}; found '${m.s}'${didYouMean(m.s, MIGRATE_MODES)}`,
            m.at,
            m.s.length,
          )
          return null
        }
        tooMany(3)
        if (page !== null) notePageOp(p, ws[1]!, head.s, page)
        return page === null ? null : { kind: 'migrate', page, mode: (m?.s ?? 'async') as MigrateMode }
      }
      case 'write_fault':
      case 'cow_fault':
      case 'ksm_merge':
      case 'reclaim':
      case 'unmap_mapping_range':
      case 'writeback':
      case 'truncate':
      case 'vfree': {
        const page = pageWord(ws[1], p, head.s, src)
        tooMany(2)
        if (page !== null) notePageOp(p, ws[1]!, head.s, page)
        return page === null ? null : { kind: head.s, page }
      }
      case 'translate': {
        // An ATS Translation Request needs the device's ATC (a hw-walker with ats: true).
        const d = devVia === undefined ? undefined : secondaries[devVia]
        if (d && (d.type !== 'hw-walker' || !d.ats))
          issues.add(
            p,
            `translate is a PCIe ATS Translation Request: ${tname} must go through a hw-walker with ats: true ('${d.name}' has no ATC)`,
            head.at,
            head.s.length,
          )
        const page = pageWord(ws[1], p, head.s, src)
        tooMany(2)
        if (page !== null) notePageOp(p, ws[1]!, head.s, page)
        return page === null ? null : { kind: 'translate', page }
      }
      case 'migrate_vma': {
        // migrate_vma P [owner M]: M's driver migrates (migrate_vma.pgmap_owner = its owner).
        const page = pageWord(ws[1], p, head.s, src)
        if (page !== null) notePageOp(p, ws[1]!, head.s, page)
        let owner: number | undefined
        if (ws[2]) {
          const m = ws[3]
          const i = m ? secIndex.get(m.s) : undefined
          const d = i === undefined ? undefined : secondaries[i]
          if (ws[2].s !== 'owner') {
            issues.add(
              p,
              `migrate_vma takes a page, then optionally 'owner <sw-mirror>'; found '${ws[2].s}'`,
              ws[2].at,
              ws[2].s.length,
            )
            return null
          }
          if (!m || i === undefined || d?.type !== 'sw-mirror' || d.protocol !== 'hmm') {
            const hmm = secondaries
              .filter((x) => x.type === 'sw-mirror' && x.protocol === 'hmm')
              .map((x) => x.name)
            issues.add(
              p,
              `owner names the HMM driver migrating the page: a sw-mirror with protocol: hmm${m ? `; '${m.s}' is not one${didYouMean(m.s, hmm)}` : ''} (${hmm.length ? `declared: ${hmm.join(', ')}` : 'none declared'})`,
              m ? m.at : ws[2].at,
              m ? m.s.length : ws[2].s.length,
            )
            return null
          }
          owner = i
          ownerOps.push({
            path: p,
            at: ws[2].at,
            len: m.at + m.s.length - ws[2].at,
            thread: tname,
            sec: d.name,
          })
          tooMany(4)
        }
        return page === null
          ? null
          : owner === undefined
            ? { kind: 'migrate_vma', page }
            : { kind: 'migrate_vma', page, owner }
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
      case 'exit':
      case 'oom_reap': {
        tooMany(1)
        exits.push({ path: p, at: head.at, len: head.s.length, op: head.s, thread: tname })
        return { kind: head.s }
      }
      case 'mremap': {
        // mremap P Q: MREMAP_MAYMOVE|MREMAP_FIXED of P's page to address Q.
        const page = pageWord(ws[1], p, 'mremap', src)
        if (!ws[2]) {
          issues.add(
            p,
            "mremap needs the page to move and the address to move it to, as in 'mremap P Q'",
            src.length,
            1,
          )
          return null
        }
        const to = pageWord(ws[2], p, 'mremap', src)
        tooMany(3)
        if (page === null || to === null) return null
        notePageOp(p, ws[1]!, 'mremap', page)
        const from = pages[page]!
        const dst = pages[to]!
        const problem =
          page === to
            ? 'mremap moves a page to another address'
            : from.kind === 'pfnmap' || from.kind === 'kernel'
              ? `mremap moves anon or file pages; '${from.name}' is ${from.kind}`
              : dst.kind === 'kernel'
                ? `the target '${dst.name}' must be a process address, not a kernel page`
                : from.kind === 'file' && dst.fileOf !== (from.fileOf ?? page)
                  ? `moving a file page: declare the target as the same file offset, '${dst.name}: { kind: file, file: ${pages[from.fileOf ?? page]!.name}, mapped: none }'`
                  : from.kind === 'anon' && dst.kind !== 'anon'
                    ? `the target '${dst.name}' of an anon page must be an anon page`
                    : null
        if (problem) {
          issues.add(p, problem, ws[2].at, ws[2].s.length)
          return null
        }
        return { kind: 'mremap', page, to }
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
        checkKeys(body, CPU_THREAD_KEYS, path, issues, `cpu thread '${tname}'`)
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
      checkKeys(body, DEVICE_THREAD_KEYS, path, issues, `device thread '${tname}'`)
      const via = typeof body.via === 'string' ? secIndex.get(body.via) : undefined
      if (via === undefined) {
        issues.add(
          [...path, 'via'],
          `via must name a secondary (${[...secIndex.keys()].join(', ') || 'none declared'}); found ${typeName(body.via)}`,
        )
      }
      devVia = via
      const { ops, text } = parseOps(body.ops, [...path, 'ops'], tname, 'device')
      devVia = undefined
      if (tooManyThreads(path)) continue
      const sd = via === undefined ? undefined : secondaries[via]
      if (sd?.type === 'sw-mirror' && sd.protocol === 'hmm' && raw.thp !== undefined)
        issues.add(
          [...path, 'via'],
          `an HMM mirror (protocol: hmm) is modelled on small pages; '${sd.name}' in a scenario with a huge page (thp:) is not`,
        )
      // A device thread works in the mm its secondary is bound to (`mm: child`: it starts once
      // fork returned, as the child's CPU threads do: step.ts blockedReason).
      if (via !== undefined)
        threads.push({ name: tname, kind: 'device', mm: secondaries[via]!.mm ?? 0, via, ops, opText: text })
    }
  if (threadNames.size === 0) issues.add([], 'a scenario needs at least one thread under cpus or devices')
  const childThreads = threads.filter((t) => t.mm === 1 && t.kind === 'cpu')
  if (childThreads.length > 0 && !hasCowPages && forks === 0) {
    issues.add(
      ['cpus', childThreads[0]!.name, 'mm'],
      'mm: child needs a fork child: a fork op or a cow: true page',
    )
  }
  const childSec = secondaries.findIndex((d) => d.mm === 1)
  if (childSec >= 0 && !hasCowPages && forks === 0)
    issues.add(
      ['secondary', childSec, 'mm'],
      `mm: child binds '${secondaries[childSec]!.name}' to the fork child's mm: it needs a fork child, a fork op or a cow: true page`,
    )
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
    if (o.op === 'truncate' && !file)
      issues.add(
        o.path,
        `truncate shrinks a file below a MAP_SHARED file page; page '${pages[o.page]!.name}' is ${pages[o.page]!.kind} (declare it kind: file)`,
        o.at,
        o.len,
      )
    if (o.op === 'truncate' && threads.find((t) => t.name === o.thread)?.mm === 1)
      issues.add(
        o.path,
        'truncate runs on a thread of the process (mm: process): the file is mapped there',
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
    // (On a subpage of a file huge page ksm_merge and migrate_vma were refused with the reason.)
    const shmemThp = thp.some((h) => h.kind === 'file' && h.pages.includes(o.page))
    if (file && (o.op === 'cow_fault' || (!shmemThp && ['ksm_merge', 'migrate_vma'].includes(o.op))))
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
  // With a fork child, migrate, migrate_vma and reclaim walk the child's mappings too
  // (kernel/rmap.ts walkVmas), in any threads: the anon folio's LRU isolation and lock
  // (PFrame.iso, lk) run them one at a time on a folio, as the kernel does. An HMM driver's
  // migration (owner M) is of the memory it mirrors.
  for (const o of ownerOps) {
    const owner = secondaries.find((d) => d.name === o.sec)
    if (owner?.mm === 1)
      issues.add(
        o.path,
        `owner ${o.sec}: ${o.sec} mirrors the fork child (mm: child), and migrate_vma here migrates the process's memory; a driver migrates only the mm it mirrors`,
        o.at,
        o.len,
      )
    else if (threads.find((t) => t.name === o.thread)?.mm === 1)
      issues.add(
        o.path,
        `owner ${o.sec}: ${o.sec}'s driver migrates the process's memory, which it mirrors; ${o.thread} is a thread of the fork child (drop owner, or run the op in a thread of the process)`,
        o.at,
        o.len,
      )
  }
  checkExits(exits, threads, pages, issues)
  checkThpIsolations(thpIsolations, thpCollapses, thp, issues)
  if (forks > 0) checkThpFork(thpCpuOps, threads, issues)
  if (forks > 0 && hasCowPages) {
    issues.add(
      ['pages'],
      'cow: true pages already imply a fork child; a scenario with cow pages cannot fork again',
    )
  }

  return { threads, registers, threadNames, flags }
}

/** An op on huge page `hp` (an index into `thp`) noted for the checks after every thread. */
interface ThpOpNote {
  path: Path
  at: number
  len: number
  op: string
  thread: string
  hp: number
}

/** The pages an op names, or null for an op on the whole mm (fork, exit, oom_reap). */
function opPages(op: Op, thp: readonly ThpDecl[]): number[] | null {
  if ('pages' in op) return [...op.pages]
  if (op.kind === 'mremap') return [op.page, op.to]
  if ('page' in op) return [op.page]
  if (op.kind === 'thp_split' || op.kind === 'thp_collapse') return [...thp[op.hp]!.pages]
  if (op.kind === 'fork' || op.kind === 'exit' || op.kind === 'oom_reap') return null
  return []
}

/**
 * Reclaim and migration of the huge page isolate its folio from the LRU and hold the folio lock
 * (ksm_merge and migrate_vma hold it across split_huge_page) until they are done, so the kernel
 * runs one of them at a time on it (a second isolation fails). The model has the folio lock
 * and isolation for small folios only (PFrame.lk, iso), not yet for a PMD-mapped huge folio
 * (thpRmap.ts isolateHuge): at most one thread reclaims or migrates the huge page. With its
 * thp_collapse: khugepaged's __collapse_huge_page_isolate() trylocks and isolates each old
 * page and backs out (SCAN_PAGE_LOCK / SCAN_DEL_PAGE_LRU, the PMD restored), which the model
 * has; the pages it meets are small folios of a `mapped: pte` huge page as long as it is
 * collapsed once (the huge folio it makes is only reclaimed or migrated after). A `mapped: pmd`
 * huge page, or a second collapse, could meet subpages of a huge folio another op isolated
 * without the lock: refused.
 */
function checkThpIsolations(
  isolations: readonly ThpOpNote[],
  collapses: readonly ThpOpNote[],
  thp: readonly ThpDecl[],
  issues: Issues,
): void {
  for (const o of isolations) {
    // One huge page's folio at a time; another huge page's folio is another folio.
    const first = isolations.find((x) => x.hp === o.hp)
    if (o.thread !== first!.thread)
      issues.add(
        o.path,
        `${o.op} of the huge page in a second thread (${first!.thread} already has ${first!.op}) is not modelled: reclaim and migration isolate and lock the huge folio, ksm_merge and migrate_vma lock it to split it, one at a time, and the model has that lock for small folios only; put them in one thread`,
        o.at,
        o.len,
      )
    const cs = collapses.filter((x) => x.hp === o.hp)
    if (cs.length > 0 && (thp[o.hp]!.mapped !== 'pte' || cs.length > 1))
      issues.add(
        o.path,
        thp[o.hp]!.mapped !== 'pte'
          ? `${o.op} with thp_collapse of a huge page declared mapped: pmd is not modelled: the collapse could meet subpages of the huge folio this op isolated, whose lock the model does not have (declare it mapped: pte: the collapse then meets small folios and backs out when one is locked)`
          : `${o.op} with two thp_collapse ops of the huge page is not modelled: the second collapse could meet subpages of the huge folio the first made, isolated without the lock the model has for small folios only`,
        o.at,
        o.len,
      )
  }
}

/**
 * A huge page and a fork child (copy_huge_pmd shares the huge PMD write-protected): the child's
 * threads may do THP_CHILD_OPS on their own huge PMD. The process's ops all run: the THP rmap
 * walks visit both mms (kernel/thpRmap.ts), and thp_collapse in the process leaves the child
 * the pages it still shares (kernel/thp.ts exceedsSharedPtes).
 */
function checkThpFork(
  ops: ReadonlyArray<{ path: Path; at: number; len: number; op: string; thread: string }>,
  threads: readonly ThreadDecl[],
  issues: Issues,
): void {
  for (const o of ops) {
    const th = threads.find((t) => t.name === o.thread)
    if (th?.mm === 1 && !THP_CHILD_OPS.includes(o.op))
      issues.add(
        o.path,
        `${o.op} in a thread of the fork child is not modelled in a scenario with a huge page; the child's threads may ${THP_CHILD_OPS.join(', ')}`,
        o.at,
        o.len,
      )
  }
}

/** The ops a thread of the process may have besides the exiting thread's: none that use the mm. */
const NOT_THE_MM = ['signal', 'wait', 'oom_reap', 'truncate']

/**
 * `exit` and `oom_reap`: exit_mmap runs when the process's last thread exits, so `exit` is the
 * last op of a process thread, once, and no other CPU thread of the process uses its memory
 * (they exited before; the reaper is a kthread working on the mm from outside). The fork child
 * does not exit; its threads, and devices bound to it (mm: child), run on while the process exits.
 */
function checkExits(
  exits: ReadonlyArray<{ path: Path; at: number; len: number; op: string; thread: string }>,
  threads: readonly ThreadDecl[],
  pages: readonly PageDecl[],
  issues: Issues,
): void {
  let exitSeen = false
  for (const e of exits) {
    const th = threads.find((t) => t.name === e.thread)
    if (!th) continue
    if (th.mm !== 0) {
      issues.add(
        e.path,
        `${e.op} works on the process's mm; ${e.thread} is a thread of the fork child`,
        e.at,
        e.len,
      )
      continue
    }
    if (pages.some((pg) => pg.kind === 'kernel')) {
      issues.add(e.path, `${e.op} in a scenario with kernel pages is not modelled`, e.at, e.len)
      continue
    }
    if (e.op === 'oom_reap') continue
    if (exitSeen) {
      issues.add(e.path, 'the process exits once: one exit op', e.at, e.len)
      continue
    }
    exitSeen = true
    if (th.ops[th.ops.length - 1]?.kind !== 'exit')
      issues.add(e.path, `exit must be the last op of ${e.thread}: the thread is gone after it`, e.at, e.len)
    const other = threads.find(
      (t) => t !== th && t.kind === 'cpu' && t.mm === 0 && t.ops.some((o) => !NOT_THE_MM.includes(o.kind)),
    )
    if (other)
      issues.add(
        e.path,
        `exit_mmap runs when the process's last thread exits, but ${other.name} also uses the process's memory; give it only signal, wait, oom_reap or truncate (or fold its ops into ${e.thread} before exit)`,
        e.at,
        e.len,
      )
  }
}
