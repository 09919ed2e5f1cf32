/**
 * The litmus-style `forbid` condition: `r1 == 1 && r0 == 0`, `mem(A) != 7 || !(r2 > 0)`.
 * Bare names are registers, `mem(P)` is the final value of page P read through the process's
 * page table, `disk(P)` what writeback last stored for file page P (initially its value). A
 * register whose read faulted (or never ran) has no value, and every comparison involving a
 * missing value is false.
 */
import type { Expr } from './types'

export interface ExprError {
  readonly offset: number
  readonly length: number
  readonly message: string
}

interface Tok {
  readonly t: 'num' | 'name' | 'op' | 'end'
  readonly s: string
  readonly at: number
}

const OPS = ['&&', '||', '==', '!=', '<=', '>=', '<', '>', '!', '(', ')']

/** Limits that keep parsing and evaluation (both recursive) far from the stack's end. */
export const FORBID_LIMITS = { tokens: 4_000, nesting: 100 } as const

const NUM = /-?\d+/y
const NAME = /[A-Za-z_][A-Za-z0-9_]*/y

function tokenize(src: string): Tok[] | ExprError {
  const out: Tok[] = []
  let i = 0
  while (i < src.length) {
    const c = src[i]!
    if (c === ' ' || c === '\t') {
      i++
      continue
    }
    if (out.length >= FORBID_LIMITS.tokens)
      return {
        offset: i,
        length: 1,
        message: `the condition is longer than ${FORBID_LIMITS.tokens} tokens; split the scenario`,
      }
    NUM.lastIndex = i
    const num = NUM.exec(src)
    if (num && (c !== '-' || out.length === 0 || out[out.length - 1]!.t === 'op')) {
      out.push({ t: 'num', s: num[0], at: i })
      i += num[0].length
      continue
    }
    NAME.lastIndex = i
    const name = NAME.exec(src)
    if (name) {
      out.push({ t: 'name', s: name[0], at: i })
      i += name[0].length
      continue
    }
    const op = OPS.find((o) => src.startsWith(o, i))
    if (op) {
      out.push({ t: 'op', s: op, at: i })
      i += op.length
      continue
    }
    if (c === '=') return { offset: i, length: 1, message: "'=' is not a comparison; use '=='" }
    return { offset: i, length: 1, message: `unexpected character '${c}'` }
  }
  out.push({ t: 'end', s: '', at: src.length })
  return out
}

export interface ExprNames {
  register(name: string): number | null
  page(name: string): number | null
  /** Whether page `i` is a file page (only those have a disk block); absent: all pages. */
  file?(i: number): boolean
}

/** Parses a forbid condition; names are resolved through `names`. */
export function parseExpr(src: string, names: ExprNames): Expr | ExprError {
  const toks = tokenize(src)
  if (!Array.isArray(toks)) return toks
  let p = 0
  let depth = 0
  const peek = (): Tok => toks[p]!
  const fail = (t: Tok, message: string): never => {
    throw { offset: t.at, length: Math.max(1, t.s.length), message } satisfies ExprError
  }
  const expectOp = (s: string): void => {
    const t = peek()
    if (t.t !== 'op' || t.s !== s)
      fail(t, `expected '${s}'${t.t === 'end' ? ' before the end' : ` but found '${t.s}'`}`)
    p++
  }
  const orExpr = (): Expr => {
    let a = andExpr()
    while (peek().t === 'op' && peek().s === '||') {
      p++
      a = { k: 'bin', op: '||', a, b: andExpr() }
    }
    return a
  }
  const andExpr = (): Expr => {
    let a = unary()
    while (peek().t === 'op' && peek().s === '&&') {
      p++
      a = { k: 'bin', op: '&&', a, b: unary() }
    }
    return a
  }
  const nest = (t: Tok): void => {
    if (++depth > FORBID_LIMITS.nesting)
      fail(t, `the condition nests deeper than ${FORBID_LIMITS.nesting} levels of '!' and parentheses`)
  }
  const unary = (): Expr => {
    if (peek().t === 'op' && peek().s === '!') {
      nest(peek())
      p++
      const e: Expr = { k: 'not', e: unary() }
      depth--
      return e
    }
    return comparison()
  }
  const comparison = (): Expr => {
    const a = operand()
    const t = peek()
    if (t.t === 'op' && ['==', '!=', '<', '<=', '>', '>='].includes(t.s)) {
      p++
      const b = operand()
      return { k: 'cmp', op: t.s as '==', a, b }
    }
    if (a.k === 'num' || a.k === 'reg' || a.k === 'mem' || a.k === 'disk') {
      // A bare value is not a condition: litmus conditions compare.
      if (!(t.t === 'op' && (t.s === ')' || t.s === '&&' || t.s === '||')) && t.t !== 'end') {
        fail(t, `expected a comparison operator (==, !=, <, <=, >, >=) but found '${t.s}'`)
      }
      fail(t, 'expected a comparison such as r0 == 1')
    }
    return a
  }
  const operand = (): Expr => {
    const t = peek()
    if (t.t === 'num') {
      p++
      return { k: 'num', v: Number(t.s) }
    }
    if (t.t === 'op' && t.s === '(') {
      nest(t)
      p++
      const e = orExpr()
      expectOp(')')
      depth--
      return e
    }
    if (t.t === 'name') {
      p++
      // `disk` is a function only when called: a register may still be named disk.
      if (t.s === 'mem' || (t.s === 'disk' && peek().t === 'op' && peek().s === '(')) {
        const fn = t.s
        expectOp('(')
        const n = peek()
        if (n.t !== 'name') fail(n, `expected a page name inside ${fn}(...)`)
        const page = names.page(n.s)
        if (page === null) fail(n, `unknown page '${n.s}' in ${fn}(...)`)
        if (fn === 'disk' && names.file && !names.file(page!))
          fail(n, `disk(${n.s}): only file pages (kind: file) are written back to disk`)
        p++
        expectOp(')')
        return fn === 'mem' ? { k: 'mem', page: page! } : { k: 'disk', page: page! }
      }
      const r = names.register(t.s)
      if (r === null) {
        fail(t, `unknown register '${t.s}': no read in this scenario writes it (names are case-sensitive)`)
      }
      return { k: 'reg', r: r! }
    }
    return fail(t, t.t === 'end' ? 'expression ends too early' : `unexpected '${t.s}'`)
  }
  try {
    const e = orExpr()
    if (peek().t !== 'end') fail(peek(), `unexpected '${peek().s}' after the condition`)
    return e
  } catch (err) {
    if (err && typeof err === 'object' && 'offset' in err) return err as ExprError
    throw err
  }
}

/** Three-valued evaluation collapsed to boolean: comparisons with a missing value are false. */
export function evalExpr(
  e: Expr,
  reg: (r: number) => number | null,
  mem: (page: number) => number | null,
  disk: (page: number) => number | null = () => null,
): boolean {
  const val = (x: Expr): number | null => {
    switch (x.k) {
      case 'num':
        return x.v
      case 'reg':
        return reg(x.r)
      case 'mem':
        return mem(x.page)
      case 'disk':
        return disk(x.page)
      default:
        return evalExpr(x, reg, mem, disk) ? 1 : 0
    }
  }
  switch (e.k) {
    case 'not':
      return !evalExpr(e.e, reg, mem, disk)
    case 'bin':
      return e.op === '&&'
        ? evalExpr(e.a, reg, mem, disk) && evalExpr(e.b, reg, mem, disk)
        : evalExpr(e.a, reg, mem, disk) || evalExpr(e.b, reg, mem, disk)
    case 'cmp': {
      const a = val(e.a)
      const b = val(e.b)
      if (a === null || b === null) return false
      switch (e.op) {
        case '==':
          return a === b
        case '!=':
          return a !== b
        case '<':
          return a < b
        case '<=':
          return a <= b
        case '>':
          return a > b
        case '>=':
          return a >= b
      }
      return false
    }
    default:
      return val(e) !== 0 && val(e) !== null
  }
}

export function exprToString(
  e: Expr,
  regName: (r: number) => string,
  pageName: (p: number) => string,
): string {
  switch (e.k) {
    case 'num':
      return String(e.v)
    case 'reg':
      return regName(e.r)
    case 'mem':
      return `mem(${pageName(e.page)})`
    case 'disk':
      return `disk(${pageName(e.page)})`
    case 'not':
      return `!(${exprToString(e.e, regName, pageName)})`
    case 'bin':
      return `(${exprToString(e.a, regName, pageName)} ${e.op} ${exprToString(e.b, regName, pageName)})`
    case 'cmp':
      return `${exprToString(e.a, regName, pageName)} ${e.op} ${exprToString(e.b, regName, pageName)}`
  }
}
