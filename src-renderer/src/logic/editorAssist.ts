/**
 * What the scenario editor knows about ops beyond the JSON schema (monaco-yaml completes keys and
 * enums, but an op is a free string such as `write_fault A` or `read A -> r0`): where an op name
 * sits, for completion and hover inside `[ ]` flow sequences as well as `- ` block items, and
 * the Quick Fix a validation message's "did you mean" offers. Pure: lines in, ranges out
 * (1-based lines and columns, as Monaco and ValidationIssue count).
 */

export type ThreadKind = 'cpu' | 'device'

/** Op name -> one-line doc, per thread kind (the scenario schema's `x-op-docs`). */
export type OpDocs = Readonly<Record<ThreadKind, Readonly<Record<string, string>>>>

/** Reads `x-op-docs` from the engine's scenario schema; null if the schema has none. */
export function opDocsFromSchema(schema: unknown): OpDocs | null {
  const docs = (schema as { 'x-op-docs'?: unknown } | null)?.['x-op-docs'] as Partial<OpDocs> | undefined
  if (!docs || typeof docs.cpu !== 'object' || typeof docs.device !== 'object') return null
  return { cpu: docs.cpu ?? {}, device: docs.device ?? {} }
}

/** The op-name slot at a position: which thread kind, the name typed so far and its columns. */
export interface OpSlot {
  readonly kind: ThreadKind
  /** The whole op-name word around the position ('' in an empty slot). */
  readonly word: string
  /** Columns of that word: [startColumn, endColumn). */
  readonly startColumn: number
  readonly endColumn: number
}

const TOP_KEY = /^([A-Za-z_][\w-]*)\s*:/

/** The 0-based index of the top-level key line whose section holds `line` (1-based), or -1. */
function sectionStart(lines: readonly string[], line: number): number {
  for (let i = line - 1; i >= 0; i--) if (TOP_KEY.test(lines[i]!)) return i
  return -1
}

function kindOf(section: string | undefined): ThreadKind | null {
  return section === 'cpus' ? 'cpu' : section === 'devices' ? 'device' : null
}

/**
 * The flow sequence holding offset `at` of `text`: the index of its `[` and where the item at
 * `at` starts (after the `[` or the last `,` of that level). Null outside `[ ]` (or in `{ }`).
 */
function enclosingFlowItem(text: string, at: number): { open: number; itemStart: number } | null {
  let depth = 0
  let itemStart = -1
  for (let i = at - 1; i >= 0; i--) {
    const c = text[i]
    if (c === ']' || c === '}') depth++
    else if (c === '[' || c === '{') {
      if (depth > 0) {
        depth--
        continue
      }
      if (c === '{') return null
      return { open: i, itemStart: itemStart === -1 ? i + 1 : itemStart }
    } else if (c === ',' && depth === 0 && itemStart === -1) itemStart = i + 1
  }
  return null
}

/** Whether the text before a `[` makes it an op list: `C0: [` or `ops: [`, not `mm: [`. */
function opListOpener(text: string, bracket: number, kind: ThreadKind): boolean {
  const key = /([A-Za-z_][\w-]*)\s*:\s*$/.exec(text.slice(0, bracket))?.[1]
  if (!key) return false
  // Under cpus: a thread's list may be written directly (`C0: [...]`); devices always use `ops:`.
  return key === 'ops' || (kind === 'cpu' && key !== 'mm')
}

/**
 * The op-name slot at (line, column), or null when the position is not where an op name goes:
 * the first word of an item of a thread's op list under `cpus:` or `devices:`, written
 * `C0: [write_fault A, read A -> r0]` (on one line or several),
 * `D0: { via: smmu, ops: [read A] }` or as `- read A` items.
 */
export function opSlotAt(lines: readonly string[], line: number, column: number): OpSlot | null {
  const top = sectionStart(lines, line)
  const kind = kindOf(top === -1 ? undefined : TOP_KEY.exec(lines[top]!)![1])
  const text = lines[line - 1]
  if (!kind || text === undefined) return null
  // The section up to this line, so that a flow sequence may span lines.
  const before = lines
    .slice(top, line - 1)
    .map((l) => l + '\n')
    .join('')
  const all = before + text
  const at = before.length + Math.min(Math.max(0, column - 1), text.length)
  let itemStart = -1
  const flow = enclosingFlowItem(all, at)
  if (flow) {
    if (opListOpener(all, flow.open, kind)) itemStart = flow.itemStart
  } else {
    const block = /^(\s*-\s+)/.exec(text)
    if (block && at - before.length >= block[1]!.length) itemStart = before.length + block[1]!.length
  }
  if (itemStart === -1) return null
  const wordStart = itemStart + /^\s*/.exec(all.slice(itemStart))![0].length
  // The item's name is on an earlier line, or the position is before it.
  if (wordStart < before.length || at < wordStart) return null
  const word = /^[\w-]*/.exec(all.slice(wordStart))![0]
  const wordEnd = wordStart + word.length
  // Past the op name (an operand, or after the space that ends it): not an op slot.
  if (at > wordEnd) return null
  const col = (offset: number): number => offset - before.length + 1
  return { kind, word, startColumn: col(wordStart), endColumn: col(wordEnd) }
}

export interface OpCompletion {
  readonly label: string
  readonly detail: string
}

/** The ops a slot may hold, those starting with what was typed first, then the rest. */
export function opCompletions(slot: OpSlot, docs: OpDocs): OpCompletion[] {
  const all = Object.entries(docs[slot.kind]).map(([label, detail]) => ({ label, detail }))
  const typed = slot.word.toLowerCase()
  return [...all.filter((o) => o.label.startsWith(typed)), ...all.filter((o) => !o.label.startsWith(typed))]
}

/** The doc of the op named at (line, column), with its range; null when no known op is there. */
export function opHover(
  lines: readonly string[],
  line: number,
  column: number,
  docs: OpDocs,
): { op: string; doc: string; startColumn: number; endColumn: number } | null {
  const slot = opSlotAt(lines, line, column)
  if (!slot || slot.word === '') return null
  const doc = docs[slot.kind][slot.word]
  if (doc === undefined) return null
  return { op: slot.word, doc, startColumn: slot.startColumn, endColumn: slot.endColumn }
}

/** A validation problem as a marker shows it: its message and the text its range covers. */
export interface MarkedProblem {
  readonly message: string
  /** The text under the marker's range. */
  readonly text: string
}

/** The Quick Fix of a problem: replace the marked text by the validator's suggestion. */
export interface QuickFix {
  readonly title: string
  readonly replacement: string
}

const DID_YOU_MEAN = /\(did you mean '([^']+)'\?\)/

/**
 * The replacement a validation message suggests ("unknown cpu op 'write_falt' (did you mean
 * 'write_fault'?)"), if the marked text is the word it objects to. Null when there is no
 * suggestion, or when the marker does not cover the quoted word (the fix would edit the
 * wrong text).
 */
export function quickFixFor(p: MarkedProblem): QuickFix | null {
  const m = DID_YOU_MEAN.exec(p.message)
  if (!m) return null
  const replacement = m[1]!
  const marked = p.text
  if (marked === '' || marked === replacement) return null
  // The message quotes the bad word before the suggestion ('write_falt', or "arm65").
  const quoted = [...p.message.slice(0, m.index).matchAll(/'([^']*)'|"([^"]*)"/g)].map((q) => q[1] ?? q[2])
  if (quoted.length > 0 && !quoted.includes(marked)) return null
  return { title: `Change to '${replacement}'`, replacement }
}
