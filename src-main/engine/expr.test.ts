import { describe, expect, it } from 'vitest'
import { evalExpr, exprToString, parseExpr, type ExprError, type ExprNames } from './expr'
import type { Expr } from './types'

// Registers r0, r1, r2 (indices 0..2); pages A, B (indices 0..1).
const REGS = ['r0', 'r1', 'r2']
const PAGES = ['A', 'B']
const names: ExprNames = {
  register: (n) => (REGS.includes(n) ? REGS.indexOf(n) : null),
  page: (n) => (PAGES.includes(n) ? PAGES.indexOf(n) : null),
}

function parse(src: string): Expr {
  const r = parseExpr(src, names)
  if ('message' in r) throw new Error(`unexpected parse error at ${r.offset}: ${r.message}`)
  return r
}

function parseError(src: string): ExprError {
  const r = parseExpr(src, names)
  if (!('message' in r)) throw new Error(`expected a parse error for ${JSON.stringify(src)}`)
  return r
}

/** Evaluates with register values (null = missing) and page values. */
function evaluate(src: string, regs: Array<number | null>, mem: Array<number | null> = [0, 0]): boolean {
  return evalExpr(
    parse(src),
    (r) => regs[r]!,
    (p) => mem[p]!,
  )
}

const show = (e: Expr): string =>
  exprToString(
    e,
    (r) => REGS[r]!,
    (p) => PAGES[p]!,
  )

describe('parseExpr: structure', () => {
  it('parses a comparison of a register and a number', () => {
    expect(parse('r1 == 1')).toEqual({
      k: 'cmp',
      op: '==',
      a: { k: 'reg', r: 1 },
      b: { k: 'num', v: 1 },
    })
  })

  it('parses every comparison operator', () => {
    for (const op of ['==', '!=', '<', '<=', '>', '>='] as const) {
      expect(parse(`r0 ${op} 2`)).toEqual({ k: 'cmp', op, a: { k: 'reg', r: 0 }, b: { k: 'num', v: 2 } })
    }
  })

  it('&& binds tighter than || on either side', () => {
    expect(show(parse('r0 == 1 || r1 == 1 && r2 == 0'))).toBe('(r0 == 1 || (r1 == 1 && r2 == 0))')
    expect(show(parse('r0 == 1 && r1 == 1 || r2 == 0'))).toBe('((r0 == 1 && r1 == 1) || r2 == 0)')
  })

  it('&& and || are left-associative', () => {
    expect(show(parse('r0 == 0 && r1 == 1 && r2 == 2'))).toBe('((r0 == 0 && r1 == 1) && r2 == 2)')
    expect(show(parse('r0 == 0 || r1 == 1 || r2 == 2'))).toBe('((r0 == 0 || r1 == 1) || r2 == 2)')
  })

  it('parentheses override precedence', () => {
    expect(show(parse('(r0 == 1 || r1 == 1) && r2 == 0'))).toBe('((r0 == 1 || r1 == 1) && r2 == 0)')
    expect(parse('(r0 == 1 || r1 == 1) && r2 == 0')).toMatchObject({
      k: 'bin',
      op: '&&',
      a: { k: 'bin', op: '||' },
      b: { k: 'cmp', op: '==' },
    })
  })

  it('! applies to the following comparison or parenthesised condition', () => {
    expect(parse('!r0 == 1')).toEqual({
      k: 'not',
      e: { k: 'cmp', op: '==', a: { k: 'reg', r: 0 }, b: { k: 'num', v: 1 } },
    })
    expect(show(parse('!(r0 == 1 || r1 == 1) && r2 == 0'))).toBe('(!((r0 == 1 || r1 == 1)) && r2 == 0)')
    expect(parse('!!(r0 == 1)')).toMatchObject({ k: 'not', e: { k: 'not', e: { k: 'cmp' } } })
  })

  it('mem(P) resolves the page name to its index', () => {
    expect(parse('mem(B) != 7')).toEqual({
      k: 'cmp',
      op: '!=',
      a: { k: 'mem', page: 1 },
      b: { k: 'num', v: 7 },
    })
    expect(parse('mem( A ) == r2')).toEqual({
      k: 'cmp',
      op: '==',
      a: { k: 'mem', page: 0 },
      b: { k: 'reg', r: 2 },
    })
  })

  it('reads negative numbers after an operator and at the start', () => {
    expect(parse('r0 == -1')).toMatchObject({ b: { k: 'num', v: -1 } })
    expect(parse('r0>=-12')).toMatchObject({ op: '>=', b: { k: 'num', v: -12 } })
    expect(parse('-3 < r1')).toMatchObject({ op: '<', a: { k: 'num', v: -3 }, b: { k: 'reg', r: 1 } })
    expect(parse('mem(A) == -5 && r0 == 0')).toMatchObject({ a: { b: { k: 'num', v: -5 } } })
  })

  it('does not read "r0 -1" as a register followed by a negative number', () => {
    expect(parseError('r0 -1 == 0')).toEqual({ offset: 3, length: 1, message: "unexpected character '-'" })
  })
})

describe('evalExpr', () => {
  it('evaluates comparisons on register values', () => {
    expect(evaluate('r0 == 1', [1, 0, 0])).toBe(true)
    expect(evaluate('r0 == 1', [2, 0, 0])).toBe(false)
    expect(evaluate('r0 != 1', [2, 0, 0])).toBe(true)
    expect(evaluate('r0 < 1', [0, 0, 0])).toBe(true)
    expect(evaluate('r0 < 1', [1, 0, 0])).toBe(false)
    expect(evaluate('r0 <= 1', [1, 0, 0])).toBe(true)
    expect(evaluate('r0 > 1', [1, 0, 0])).toBe(false)
    expect(evaluate('r0 >= 1', [1, 0, 0])).toBe(true)
    expect(evaluate('r0 == r1', [4, 4, 0])).toBe(true)
  })

  it('honours && over || when evaluating', () => {
    // r0 == 1 || (r1 == 1 && r2 == 0): true; ((r0 == 1 || r1 == 1) && r2 == 0) would be false.
    expect(evaluate('r0 == 1 || r1 == 1 && r2 == 0', [1, 0, 1])).toBe(true)
    expect(evaluate('(r0 == 1 || r1 == 1) && r2 == 0', [1, 0, 1])).toBe(false)
    // (r0 == 1 && r1 == 1) || r2 == 0: true; r0 == 1 && (r1 == 1 || r2 == 0) would be false.
    expect(evaluate('r0 == 1 && r1 == 1 || r2 == 0', [0, 1, 0])).toBe(true)
    expect(evaluate('r0 == 1 && (r1 == 1 || r2 == 0)', [0, 1, 0])).toBe(false)
  })

  it('negates with !', () => {
    expect(evaluate('!(r0 == 1)', [1, 0, 0])).toBe(false)
    expect(evaluate('!(r0 == 1)', [0, 0, 0])).toBe(true)
    expect(evaluate('!r0 == 1 && r1 == 0', [0, 0, 0])).toBe(true)
    expect(evaluate('!!(r0 == 1)', [1, 0, 0])).toBe(true)
  })

  it('reads mem(P) through the page callback with the page index', () => {
    expect(evaluate('mem(B) == 7', [0, 0, 0], [0, 7])).toBe(true)
    expect(evaluate('mem(A) == 7', [0, 0, 0], [0, 7])).toBe(false)
    expect(evaluate('mem(A) != 7 || r2 > 0', [0, 0, 0], [7, 0])).toBe(false)
  })

  it('compares negative numbers numerically', () => {
    expect(evaluate('r0 == -1', [-1, 0, 0])).toBe(true)
    expect(evaluate('r0 < -1', [-2, 0, 0])).toBe(true)
    expect(evaluate('r0 < -1', [0, 0, 0])).toBe(false)
  })

  it('every comparison involving a missing (null) register is false', () => {
    for (const op of ['==', '!=', '<', '<=', '>', '>=']) {
      expect(evaluate(`r0 ${op} 0`, [null, 0, 0]), `r0 ${op} 0`).toBe(false)
      expect(evaluate(`0 ${op} r0`, [null, 0, 0]), `0 ${op} r0`).toBe(false)
    }
    expect(evaluate('r0 == r1', [null, null, 0])).toBe(false)
    expect(evaluate('r0 != r1', [null, 1, 0])).toBe(false)
    // A missing value in one disjunct does not poison the other.
    expect(evaluate('r0 == 1 || r1 == 1', [null, 1, 0])).toBe(true)
    expect(evaluate('r0 == 1 && r1 == 1', [null, 1, 0])).toBe(false)
  })

  it('a missing mem() value makes the comparison false', () => {
    expect(evaluate('mem(A) == 0', [0, 0, 0], [null, 0])).toBe(false)
    expect(evaluate('mem(A) != 0', [0, 0, 0], [null, 0])).toBe(false)
  })
})

describe('parseExpr: errors', () => {
  it('unknown register, with exact offset and length', () => {
    expect(parseError('r1 == 1 && r7 == 0')).toEqual({
      offset: 11,
      length: 2,
      message: "unknown register 'r7': no read in this scenario writes it (names are case-sensitive)",
    })
  })

  it('register names are case-sensitive: R1 is not r1', () => {
    expect(parse('r1 == 1')).toMatchObject({ a: { k: 'reg', r: 1 } })
    expect(parseError('r1 == 1 && R1 == 0')).toEqual({
      offset: 11,
      length: 2,
      message: "unknown register 'R1': no read in this scenario writes it (names are case-sensitive)",
    })
  })

  it("'=' instead of '=='", () => {
    expect(parseError('r0 = 1')).toEqual({
      offset: 3,
      length: 1,
      message: "'=' is not a comparison; use '=='",
    })
    expect(parseError('r0 == 1 && r1=0')).toEqual({
      offset: 13,
      length: 1,
      message: "'=' is not a comparison; use '=='",
    })
  })

  it('a bare value at the end is not a condition', () => {
    expect(parseError('r0')).toEqual({
      offset: 2,
      length: 1,
      message: 'expected a comparison such as r0 == 1',
    })
    expect(parseError('r0 == 1 && r1')).toEqual({
      offset: 13,
      length: 1,
      message: 'expected a comparison such as r0 == 1',
    })
  })

  it('a bare value before && or ) is not a condition', () => {
    expect(parseError('r0 && r1 == 1')).toEqual({
      offset: 3,
      length: 2,
      message: 'expected a comparison such as r0 == 1',
    })
    expect(parseError('(mem(A)) == 1')).toEqual({
      offset: 7,
      length: 1,
      message: 'expected a comparison such as r0 == 1',
    })
    expect(parseError('!5')).toEqual({
      offset: 2,
      length: 1,
      message: 'expected a comparison such as r0 == 1',
    })
  })

  it('a value followed by something other than an operator', () => {
    expect(parseError('r0 1')).toEqual({
      offset: 3,
      length: 1,
      message: "expected a comparison operator (==, !=, <, <=, >, >=) but found '1'",
    })
  })

  it('unbalanced parentheses: missing )', () => {
    expect(parseError('(r0 == 1')).toEqual({ offset: 8, length: 1, message: "expected ')' before the end" })
    expect(parseError('((r0 == 1) && r1 == 0')).toEqual({
      offset: 21,
      length: 1,
      message: "expected ')' before the end",
    })
  })

  it('unbalanced parentheses: extra )', () => {
    expect(parseError('r0 == 1)')).toEqual({
      offset: 7,
      length: 1,
      message: "unexpected ')' after the condition",
    })
    expect(parseError('(r0 == 1)) || r1 == 0')).toEqual({
      offset: 9,
      length: 1,
      message: "unexpected ')' after the condition",
    })
  })

  it('unbalanced parentheses: empty or unopened', () => {
    expect(parseError(')')).toEqual({ offset: 0, length: 1, message: "unexpected ')'" })
    expect(parseError('()')).toEqual({ offset: 1, length: 1, message: "unexpected ')'" })
  })

  it('unknown page in mem()', () => {
    expect(parseError('r0 == 0 || mem(Z) == 1')).toEqual({
      offset: 15,
      length: 1,
      message: "unknown page 'Z' in mem(...)",
    })
    // Page names are case-sensitive too.
    expect(parseError('mem(a) == 1')).toEqual({
      offset: 4,
      length: 1,
      message: "unknown page 'a' in mem(...)",
    })
  })

  it('malformed mem()', () => {
    expect(parseError('mem A == 1')).toEqual({ offset: 4, length: 1, message: "expected '(' but found 'A'" })
    expect(parseError('mem(1) == 1')).toEqual({
      offset: 4,
      length: 1,
      message: 'expected a page name inside mem(...)',
    })
    expect(parseError('mem(A == 1')).toEqual({ offset: 6, length: 2, message: "expected ')' but found '=='" })
  })

  it('an expression that ends too early', () => {
    expect(parseError('')).toEqual({ offset: 0, length: 1, message: 'expression ends too early' })
    expect(parseError('r0 ==')).toEqual({ offset: 5, length: 1, message: 'expression ends too early' })
    expect(parseError('r0 == 1 &&')).toEqual({ offset: 10, length: 1, message: 'expression ends too early' })
  })

  it('unexpected characters and tokens', () => {
    expect(parseError('r0 == 1 & r1 == 0')).toEqual({
      offset: 8,
      length: 1,
      message: "unexpected character '&'",
    })
    expect(parseError('r0 == 1 r1 == 0')).toEqual({
      offset: 8,
      length: 2,
      message: "unexpected 'r1' after the condition",
    })
    expect(parseError('r0 == && r1 == 0')).toEqual({ offset: 6, length: 2, message: "unexpected '&&'" })
  })
})

describe('exprToString', () => {
  it('round-trips through the parser', () => {
    for (const src of [
      'r0 == 1',
      '(r0 == 1 || (r1 == 1 && r2 == 0))',
      '(!((mem(A) != 7 || r2 > 0)) && r0 <= -1)',
    ]) {
      expect(show(parse(src))).toBe(src)
      expect(show(parse(show(parse(src))))).toBe(src)
    }
  })
})
