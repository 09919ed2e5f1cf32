/**
 * What every lab service method shares: request checking against the method's schema in
 * API_METHODS, and the path tests the scenario and notebook folders confine requests with.
 */
import path from 'node:path'
import type { z } from 'zod'
import { API_METHODS, type ApiMethod } from '../api/labApi'
import { LabApiError } from './apiErrors'

/** Checks `req` against the method's schema; the message names the offending field. */
export function parseRequest<M extends ApiMethod>(method: M, req: unknown): unknown {
  const schema = API_METHODS[method] as z.ZodType | null
  if (schema === null) return undefined
  const r = schema.safeParse(req)
  if (r.success) return r.data
  const first = r.error.issues[0]
  const where = first && first.path.length > 0 ? first.path.map(String).join('.') : 'request'
  const more = r.error.issues.length > 1 ? ` (and ${r.error.issues.length - 1} more problems)` : ''
  throw new LabApiError(`${method}: invalid ${where}: ${first?.message ?? 'invalid input'}${more}`)
}

export function isInside(root: string, p: string): boolean {
  const rel = path.relative(root, p)
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel))
}

export const isMissing = (e: unknown): boolean => (e as NodeJS.ErrnoException).code === 'ENOENT'
