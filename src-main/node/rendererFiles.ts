/**
 * The built renderer's files as both hosts serve them: the browser host over http, and the
 * desktop app over its own `app://lab/` scheme (src-main/electron/main.ts), so that the
 * Content-Security-Policy reaches the page as a response header in both (a `file://` page gets
 * no headers, only the weaker `<meta>` policy, which cannot say frame-ancestors).
 */
import { promises as fs } from 'node:fs'
import path from 'node:path'

export const CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "worker-src 'self' blob:",
  "img-src 'self' data:",
  "font-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ')

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.ttf': 'font/ttf',
  '.woff': 'font/woff',
  '.woff2': 'font/woff2',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
}

/** Headers every served file carries, besides its type. */
export const COMMON_HEADERS = {
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
}

export interface RendererFile {
  /** The file's real path (symlinks resolved, inside the renderer folder). */
  readonly file: string
  /** Its path relative to the renderer folder ('index.html' for the page). */
  readonly rel: string
  readonly contentType: string
}

/**
 * The renderer file a URL path names, or null (a 404) when it names nothing there: encoded
 * NULs, backslashes and `..` segments, a symlink out of the folder, a folder, a missing file.
 * `rendererDir` must be a real path. '/' is the page.
 */
export async function rendererFile(rendererDir: string, urlPath: string): Promise<RendererFile | null> {
  let rel: string
  try {
    rel = decodeURIComponent(urlPath)
  } catch {
    return null
  }
  if (rel === '/' || rel === '') rel = '/index.html'
  if (rel.includes('\0') || rel.includes('\\') || rel.split('/').some((s) => s === '..')) return null
  let real: string
  try {
    real = await fs.realpath(path.join(rendererDir, rel))
  } catch {
    return null
  }
  const inside = path.relative(rendererDir, real)
  if (inside === '' || inside.startsWith('..') || path.isAbsolute(inside)) return null
  const st = await fs.stat(real).catch(() => null)
  if (!st?.isFile()) return null
  const ext = path.extname(real).toLowerCase()
  return {
    file: real,
    rel: inside.split(path.sep).join('/'),
    contentType: TYPES[ext] ?? 'application/octet-stream',
  }
}

/** The headers of a served renderer file. */
export function rendererHeaders(f: RendererFile): Record<string, string> {
  return {
    ...COMMON_HEADERS,
    'Content-Security-Policy': CSP,
    'Content-Type': f.contentType,
    'Cache-Control': f.rel === 'index.html' ? 'no-store' : 'no-cache',
  }
}
