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

/** A file the user's own permissions say must not be written (mode without any write bit). */
export class ReadOnlyFileError extends Error {
  constructor(readonly file: string) {
    super(`${file} is read-only (no write permission); not overwritten`)
    this.name = 'ReadOnlyFileError'
  }
}

/**
 * The file a write must replace: a symbolic link's target (so the link stays a link), and the
 * existing file's mode (so a 0600 file stays 0600), or null for a new file.
 */
async function target(file: string): Promise<{ file: string; mode: number | null }> {
  let real = file
  try {
    real = await fs.realpath(file)
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e
    // A dangling link: write where it points.
    const st = await fs.lstat(file).catch(() => null)
    if (st?.isSymbolicLink()) real = path.resolve(path.dirname(file), await fs.readlink(file))
    return { file: real, mode: null }
  }
  const st = await fs.stat(real)
  if ((st.mode & 0o222) === 0) throw new ReadOnlyFileError(file)
  return { file: real, mode: st.mode & 0o7777 }
}

/**
 * Replaces `file` with `data` atomically. A symbolic link is written through (its target is
 * replaced, the link kept), an existing file keeps its mode, and a file without write
 * permission is refused (ReadOnlyFileError) rather than replaced behind the user's back.
 */
export async function writeFileAtomic(file: string, data: string): Promise<void> {
  const t = await target(file)
  file = t.file
  const dir = path.dirname(file)
  await fs.mkdir(dir, { recursive: true })
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomUUID()}.tmp`)
  try {
    const fh = await fs.open(tmp, 'wx', t.mode ?? 0o666)
    try {
      await fh.writeFile(data, 'utf8')
      // open()'s mode goes through the umask; the file's own mode must not.
      if (t.mode !== null) await fh.chmod(t.mode)
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
