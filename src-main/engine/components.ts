/**
 * Components: independent groups of threads explored one after the other (the default
 * reduction, with persistent sets). Built on persistent.ts's Futures and frame reachability.
 */
import { FrameRefs, frameNamed, tablesUnsettled, type Futures } from './persistent'
import type { LabState } from './state'

/**
 * Whether thread `t`'s step from `s` to `next` freed a frame that something other than its
 * own locals still names (a stale TLB or secondary entry, a PTE, another thread).
 */
export function freedNamedFrame(s: LabState, next: LabState, t: number): boolean {
  for (let pfn = 0; pfn < s.frames.length; pfn++)
    if (!s.frames[pfn]!.free && next.frames[pfn]!.free && frameNamed(next, pfn, t)) return true
  return false
}

/**
 * Components: the threads split into groups whose futures touch disjoint pages and frames and no
 * shared global resource, so that they interact only through the page-table locks (PTL,
 * pmd_lock), mmap_lock for read and the frame allocator. Returns the enabled threads of the
 * first group that may run alone, and that group (as a 0/1 mask over threads), or null when
 * there is one group, or none may run alone.
 *
 * Why exploring one group alone is enough (the projection argument; with the checks below it
 * is why every verdict stays the same):
 *   - Let K be the chosen group and R the other threads, and E any execution from this state.
 *     Then E|K (K's steps in E's order) is an execution from here, and E|R after it is one
 *     too, reaching the same final state up to frame numbers, with every step reading what it
 *     read in E (so the same violations):
 *       - no K step reads what an R step writes but a lock or the allocator, and the reverse;
 *       - a lock: each K step took it when E had it free, so free in E|K as well (no R thread
 *         holds one now: required below), and R's steps after E|K find it free if E ends with
 *         every thread done (ops never end holding one);
 *       - the allocator: in E|K then E|R, R allocates after every free of K, so it may get a
 *         frame K freed where E gave it another one. Nothing tells them apart but the frame's
 *         number and generation, unless something still names the freed frame (a stale TLB
 *         entry of K's that K reads after R wrote the frame). So: no free frame may be named
 *         anywhere here (required below), and no step may free a frame that is still named
 *         (freedNamedFrame): the explorer redoes the run without components when
 *         one does. That keeps it sound: the first such free on any path of the full graph is
 *         preceded only by steps the argument covers, so the reduced graph has one too.
 *   - So the terminal states with every thread done, and every violating step, are reached by
 *     running K first (and, within K, persistent sets over K alone), then the rest.
 *   - What the projection cannot carry: an execution in which a K thread stops for good while
 *     holding a lock (a deadlock), or that runs forever. The explorer redoes the run without
 *     reduction when the reduced graph has a cycle or a stuck terminal state; a stuck or
 *     cyclic execution of the full graph leaves one of those in the reduced graph, since its
 *     cause lies within one group: threads wait across groups only for a page-table lock, and
 *     no thread of a component nests them (taking one while holding another is shared: only
 *     fork and THP do, and they join every thread into one group).
 * The explorer checks every step it runs against its thread's future (Futures.outside), so a
 * step that touches a shared resource its thread was not foreseen to touch is a model bug,
 * never a silently wrong verdict.
 */
export function components(
  fut: Futures,
  s: LabState,
  en: readonly number[],
): { set: number[]; scope: Uint8Array } | null {
  const n = s.threads.length
  // Every thread may touch a shared resource (a sw-mirror's sequence count, ...): one group.
  if (fut.shareAll || tablesUnsettled(fut.sc, s)) return null
  // A free frame that something still names: whoever allocates it next shares it.
  for (let pfn = 0; pfn < s.frames.length; pfn++)
    if (s.frames[pfn]!.free && frameNamed(s, pfn, -1)) return null
  const live: number[] = []
  for (let u = 0; u < n; u++) if (!s.threads[u]!.done) live.push(u)
  if (live.length < 2) return null
  const parent = new Int32Array(n).map((_, i) => i)
  const find = (x: number): number => {
    while (parent[x] !== x) x = parent[x] = parent[parent[x]!]!
    return x
  }
  const unite = (a: number, b: number): void => {
    parent[find(a)] = find(b)
  }
  const op = (u: number): number => s.threads[u]!.op
  let sharer = -1
  let writer = -1
  for (const u of live) {
    if (fut.mayShare(u, op(u))) {
      if (sharer >= 0) unite(u, sharer)
      sharer = u
    }
    if (fut.mayWriteMmap(u, op(u))) writer = u
  }
  // A thread that may take mmap_lock for write joins everyone (every op takes it for read).
  if (writer >= 0) for (const u of live) unite(u, writer)
  for (let i = 0; i < live.length; i++)
    for (let j = i + 1; j < live.length; j++) {
      const u = live[i]!
      const v = live[j]!
      if (find(u) !== find(v) && fut.pagesMeet(u, op(u), v, op(v))) unite(u, v)
    }
  // Frames: threads that may reach the same frame (through their pages or their locals).
  const refs = new FrameRefs(s)
  for (let pfn = 0; pfn < s.frames.length; pfn++) {
    if (s.frames[pfn]!.free) continue
    let first = -1
    for (const u of live)
      if (refs.reaches(fut, u, op(u), pfn)) {
        if (first >= 0) unite(u, first)
        else first = u
      }
  }
  const roots = new Set(live.map(find))
  if (roots.size < 2) return null
  // The group with the fewest ops left (then the lowest thread), among those with a thread to
  // run and every page-table lock held by one of their own threads: finishing small groups
  // first keeps the others at their start. (Any group would do for the argument above.)
  const holders = new Set<number>()
  for (const m of s.mms) {
    for (const h of m.ptl) if (h >= 0) holders.add(h)
    for (const h of m.pmdl) if (h >= 0) holders.add(h)
  }
  const left = new Map<number, number>()
  for (const u of live) {
    const r = find(u)
    left.set(r, (left.get(r) ?? 0) + fut.sc.threads[u]!.ops.length - s.threads[u]!.op)
  }
  let best = -1
  for (const r of left.keys()) {
    if (!en.some((t) => find(t) === r)) continue
    if ([...holders].some((h) => find(h) !== r)) continue
    if (best < 0 || left.get(r)! < left.get(best)!) best = r
  }
  if (best < 0) return null
  const scope = new Uint8Array(n)
  for (const t of live) if (find(t) === best) scope[t] = 1
  return { set: en.filter((t) => scope[t] === 1), scope }
}
