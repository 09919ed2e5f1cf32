/**
 * Test helper: runs the mnlab CLI's main(argv) in-process and captures what it writes to stdout
 * and stderr (the CLI writes through process.stdout/stderr.write only). Used by the CLI tests.
 */
import { vi } from 'vitest'
import { main } from './cli'

export interface CliResult {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

export async function mnlab(...argv: string[]): Promise<CliResult> {
  let stdout = ''
  let stderr = ''
  const capture =
    (sink: (s: string) => void) =>
    (chunk: string | Uint8Array): boolean => {
      sink(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'))
      return true
    }
  vi.spyOn(process.stdout, 'write').mockImplementation(
    capture((s) => (stdout += s)) as typeof process.stdout.write,
  )
  vi.spyOn(process.stderr, 'write').mockImplementation(
    capture((s) => (stderr += s)) as typeof process.stderr.write,
  )
  try {
    return { code: await main(argv), stdout, stderr }
  } finally {
    vi.restoreAllMocks()
  }
}
