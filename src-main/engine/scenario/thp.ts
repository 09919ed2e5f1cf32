/**
 * `thp:`: transparent huge pages over some of the scenario's pages. Each huge page is its own
 * 2 MiB PMD range, so its own PTE table (`table:`): the loader assigns tables when no page
 * declares one (a huge page's subpages one table, the small pages between two huge pages
 * another), and checks them when pages do.
 */
import { MAX_TABLE } from './pages'
import { checkKeys, isObj, Issues, NAME, oneOf, typeName, type Obj } from './common'
import type { PageDecl, ThpDecl } from '../types'

/** The keys of a huge page under `thp:`. */
export const THP_KEYS = ['pages', 'mapped', 'kind'] as const

/**
 * `thp: { H: { pages: [A, B], mapped: pmd | pte, kind: anon | file }, J: [C, D] }`: huge pages,
 * each of 2 to 4 adjacent subpages in declaration order; the other pages are small pages in
 * tables of their own. Returns the huge pages in address order and the pages with their tables
 * (assigned when `rawPages` declares none).
 */
export function parseThp(
  raw: unknown,
  issues: Issues,
  pages: readonly PageDecl[],
  pageIndex: ReadonlyMap<string, number>,
  rawPages: unknown,
): { thp: ThpDecl[]; pages: readonly PageDecl[] } {
  if (raw === undefined) return { thp: [], pages }
  if (!isObj(raw) || Object.keys(raw).length === 0) {
    issues.add(
      ['thp'],
      `thp must map each huge page name to its subpages, as in thp: { H: { pages: [A, B] } }; found ${isObj(raw) ? 'no huge page' : typeName(raw)}`,
    )
    return { thp: [], pages }
  }
  const out: ThpDecl[] = []
  for (const [name, body] of Object.entries(raw)) {
    const h = parseOne(name, body, issues, pages, pageIndex)
    if (h === null) continue
    const taken = out.find((o) => o.pages.some((q) => h.pages.includes(q)))
    if (taken) {
      const j = h.pages.findIndex((x) => taken.pages.includes(x))
      const q = h.pages[j]!
      issues.add(
        Array.isArray(body) ? ['thp', name, j] : ['thp', name, 'pages', j],
        `page '${pages[q]!.name}' is already a subpage of huge page ${taken.name}: a page belongs to one huge page`,
      )
      continue
    }
    out.push(h)
  }
  out.sort((a, b) => a.pages[0]! - b.pages[0]!)
  if (out.length !== Object.keys(raw).length) return { thp: [], pages }
  const withTables = assignTables(out, issues, pages, rawPages)
  return withTables === null ? { thp: [], pages } : { thp: out, pages: shmemSubpages(out, withTables) }
}

/**
 * The subpages of a `kind: file` huge page are declared as anon pages mapped read-write and
 * become kind: file pages here: one MAP_SHARED shmem file's page-cache pages (a large folio
 * the page cache holds a reference on), so that a zap frees nothing and a fault on a none
 * PMD maps the page-cache page again (filemap_fault), as for a small file page.
 */
function shmemSubpages(thp: readonly ThpDecl[], pages: readonly PageDecl[]): readonly PageDecl[] {
  const file = thp.filter((h) => h.kind === 'file').flatMap((h) => h.pages)
  if (file.length === 0) return pages
  return pages.map((p, i) => (file.includes(i) ? { ...p, kind: 'file' as const } : p))
}

/**
 * The tables: with no `table:` declared, each huge page gets one of its own and the small pages
 * between huge pages share one; with tables declared, each huge page's table must hold only its
 * subpages (one huge PMD maps the whole 2 MiB range), so two huge pages never share one.
 */
function assignTables(
  thp: readonly ThpDecl[],
  issues: Issues,
  pages: readonly PageDecl[],
  rawPages: unknown,
): readonly PageDecl[] | null {
  const user = pages.map((p, i) => ({ p, i })).filter(({ p }) => p.kind !== 'kernel')
  const declared =
    isObj(rawPages) && Object.values(rawPages).some((d) => isObj(d) && (d as Obj).table !== undefined)
  const hugeOf = (i: number): ThpDecl | undefined => thp.find((h) => h.pages.includes(i))
  if (!declared) {
    let k = -1
    let prev: ThpDecl | null | undefined = undefined
    const tables: number[] = []
    for (const { i } of user) {
      const h = hugeOf(i) ?? null
      if (prev === undefined || h !== prev) k++
      prev = h
      tables[i] = k
    }
    if (k > MAX_TABLE) {
      issues.add(
        ['thp'],
        `each huge page is a PMD range of its own and the small pages between them another: these pages need ${k + 1} PTE tables, and the model has at most ${MAX_TABLE + 1}`,
      )
      return null
    }
    return pages.map((p, i) => {
      const t = tables[i]
      if (t === undefined || t === 0) return p
      return { ...p, table: t }
    })
  }
  let ok = true
  for (const h of thp) {
    const k = pages[h.pages[0]!]!.table ?? 0
    const other = user.find(({ p, i }) => (p.table ?? 0) === k && !h.pages.includes(i))
    const oh = other ? hugeOf(other.i) : undefined
    // Two huge pages in one table: said once, at the later one's subpage.
    if (other && !(oh && thp.indexOf(oh) < thp.indexOf(h))) {
      issues.add(
        ['pages', other.p.name, 'table'],
        oh
          ? `huge pages ${h.name} and ${oh.name} are both in table ${k}: each huge page is a 2 MiB PMD range of its own; give ${oh.name}'s subpages another table`
          : `table ${k} is the PMD range of huge page ${h.name} (one huge PMD maps all of it); '${other.p.name}' is a small page: give it a table of its own`,
      )
      ok = false
    }
  }
  return ok ? pages : null
}

/** One huge page `name: body`, or null (reported). */
function parseOne(
  name: string,
  body: unknown,
  issues: Issues,
  pages: readonly PageDecl[],
  pageIndex: ReadonlyMap<string, number>,
): ThpDecl | null {
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
    if (sub.length > 0 && (pg.table ?? 0) !== (pages[sub[0]!]!.table ?? 0)) {
      issues.add(
        [...pPath, j],
        `the subpages of a huge page are one PMD range, so they share one PTE table: '${pg.name}' is in table ${pg.table ?? 0}, '${pages[sub[0]!]!.name}' in table ${pages[sub[0]!]!.table ?? 0}`,
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
  if (mapped === null || kind === null) return null
  return { name, pages: sub, mapped, kind }
}
