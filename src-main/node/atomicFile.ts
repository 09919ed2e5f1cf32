/**
 * Crash-safe file writes: a temp file in the same directory, fsync, rename over the target,
 * fsync the directory. A reader sees the old file or the new one, never a mix (checked by
 * scripts/crash-test.ts). On Windows, directories cannot be fsynced.
 */
import { randomUUID } from 'node:crypto'
import { promises as fs } from 'node:fs'
import path from 'node:path'

export async function fsyncDir(dir: string): Promise<void> {
  try {
    const d = await fs.open(dir, 'r')
    try {
      await d.sync()
    } finally {
      await d.close()
    }
  } catch {
    // Windows cannot fsync a directory.
  }
}

export async function writeFileAtomic(file: string, data: string): Promise<void> {
  const dir = path.dirname(file)
  await fs.mkdir(dir, { recursive: true })
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomUUID()}.tmp`)
  try {
    const fh = await fs.open(tmp, 'wx')
    try {
      await fh.writeFile(data, 'utf8')
      await fh.sync()
    } finally {
      await fh.close()
    }
    await fs.rename(tmp, file)
  } catch (e) {
    await fs.rm(tmp, { force: true })
    throw e
  }
  await fsyncDir(dir)
}
