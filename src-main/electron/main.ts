// Electron main process: the window, the IPC adapter over LabApi, and the scenarios folder.
// Everything else lives behind LabApi (src-main/node/labService.ts), shared with the browser host.
// NOTE: this cannot be launched on our dev/CI machines (no Electron binary is obtainable offline);
// it is only built by `electron-vite build` and type-checked. Keep it tiny.
import { cpSync, existsSync, mkdirSync, readdirSync, realpathSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Worker } from 'node:worker_threads'
import { app, BrowserWindow, dialog, ipcMain, protocol, session, shell, type WebFrameMain } from 'electron'
import { isKernelSourceUrl } from '../api/kernelLinks'
import { API_METHODS, type ApiMethod, type RunEvent } from '../api/labApi'
import { createLabService, toApiError, type LabService } from '../node/labService'
import { CSP, rendererFile, rendererHeaders } from '../node/rendererFiles'
import { WorkerPool } from '../node/workerPool'

/**
 * The built renderer is served over app://lab/ (not file://), by the same code as the browser
 * host's (rendererFiles.ts): confined to the renderer folder, and with the CSP as a response
 * header, which a file:// page never gets. A standard, secure scheme, so the page has an origin
 * of its own ('self' in the CSP) and can start its Monaco workers.
 */
const SCHEME = 'app'
const APP_ORIGIN = `${SCHEME}://lab`
protocol.registerSchemesAsPrivileged([
  { scheme: SCHEME, privileges: { standard: true, secure: true, supportFetchAPI: true } },
])

// electron-vite's dev server, in development only: a packaged app never loads a page from an
// address the environment names.
const devUrl = app.isPackaged ? undefined : process.env['ELECTRON_RENDERER_URL']
const rendererDir = join(__dirname, '../renderer')

/** Packaged: Documents/MMU Notifier Lab/scenarios, seeded from the bundled catalogue. Unpackaged: ./scenarios. */
function scenariosDir(): string {
  if (!app.isPackaged) return join(app.getAppPath(), 'scenarios')
  const dir = join(app.getPath('documents'), 'MMU Notifier Lab', 'scenarios')
  mkdirSync(dir, { recursive: true })
  const bundled = join(process.resourcesPath, 'scenarios')
  if (readdirSync(dir).length === 0 && existsSync(bundled)) cpSync(bundled, dir, { recursive: true })
  return dir
}

/** Only our own page may call the API. */
function isOwnFrame(frame: WebFrameMain | null): boolean {
  if (!frame) return false
  try {
    const u = new URL(frame.url)
    if (devUrl) return u.origin === new URL(devUrl).origin
    return (
      u.protocol === `${SCHEME}:` && u.host === 'lab' && (u.pathname === '/' || u.pathname === '/index.html')
    )
  } catch {
    return false
  }
}

function registerApi(service: LabService): void {
  for (const method of Object.keys(API_METHODS) as ApiMethod[]) {
    // Replies are envelopes: Electron drops an Error's extra fields (issues) on the way.
    ipcMain.handle('lab:' + method, async (e, req: unknown) => {
      if (!isOwnFrame(e.senderFrame)) return { ok: false, error: { message: 'untrusted sender' } }
      try {
        const fn = service[method] as (a: unknown) => Promise<unknown>
        return { ok: true, result: (await fn(req)) ?? null }
      } catch (err) {
        return { ok: false, error: toApiError(err) }
      }
    })
  }
  service.onDidRunEvent((ev: RunEvent) => {
    for (const w of BrowserWindow.getAllWindows()) w.webContents.send('lab:event', ev)
  })
}

function createWindow(): void {
  const win = new BrowserWindow({
    width: 1280,
    height: 800,
    title: 'MMU Notifier Lab',
    webPreferences: {
      preload: join(__dirname, '../preload/index.js'),
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
    },
  })
  win.webContents.on('will-navigate', (e) => e.preventDefault())
  // The renderer cancels unload while a notebook or scenario has unsaved changes; Electron then
  // closes nothing and shows nothing, so ask here (calling preventDefault lets the close go on).
  win.webContents.on('will-prevent-unload', (e) => {
    const choice = dialog.showMessageBoxSync(win, {
      type: 'question',
      buttons: ['Close and lose them', 'Cancel'],
      defaultId: 1,
      cancelId: 1,
      message: 'You have unsaved changes.',
      detail: 'Unsaved notebook changes stay in the recovery area and are offered at the next start.',
    })
    if (choice === 0) e.preventDefault()
  })
  win.webContents.setWindowOpenHandler(openHandler)
  // electron-vite sets ELECTRON_RENDERER_URL in dev; a build loads the bundled renderer from disk.
  void win.loadURL(devUrl ?? `${APP_ORIGIN}/index.html`)
}

/** No new windows; a kernel source link (the step inspector's Elixir links) opens in the system browser. */
function openHandler({ url }: { url: string }): { action: 'deny' } {
  if (isKernelSourceUrl(url)) void shell.openExternal(url)
  return { action: 'deny' }
}

// Every web contents, not only the window's: no navigation away, no new windows, no webviews.
app.on('web-contents-created', (_e, contents) => {
  contents.on('will-navigate', (ev) => ev.preventDefault())
  contents.on('will-attach-webview', (ev) => ev.preventDefault())
  contents.setWindowOpenHandler(openHandler)
})

void app.whenReady().then(() => {
  // The workbench needs no camera, notifications, clipboard-read or any other permission.
  session.defaultSession.setPermissionRequestHandler((_wc, _permission, callback) => callback(false))
  session.defaultSession.setPermissionCheckHandler(() => false)
  // The renderer's files, with the CSP header (rendererFiles.ts); anything else is a 404.
  const realRenderer = realpathSync(rendererDir)
  protocol.handle(SCHEME, async (req) => {
    const u = new URL(req.url)
    const f = u.host === 'lab' && req.method === 'GET' ? await rendererFile(realRenderer, u.pathname) : null
    if (!f) return new Response('not found\n', { status: 404, headers: { 'Content-Type': 'text/plain' } })
    return new Response(await readFile(f.file), { headers: rendererHeaders(f) })
  })
  // The dev server's http:// pages get the same policy as a header.
  session.defaultSession.webRequest.onHeadersReceived((details, callback) => {
    callback({ responseHeaders: { ...details.responseHeaders, 'Content-Security-Policy': [CSP] } })
  })
  // The bundle ships the worker as out/main/exploreWorker.js (see electron.vite.config.ts).
  // Packaged, out/main is unpacked beside app.asar (electron-builder.yml asarUnpack), so the
  // worker thread loads a plain file rather than one inside the archive.
  const workerFile = join(__dirname, 'exploreWorker.js').replace(/app\.asar([\\/])/, 'app.asar.unpacked$1')
  const pool = new WorkerPool(() => new Worker(workerFile))
  const service = createLabService({
    scenariosDir: scenariosDir(),
    pool,
    // The desktop app opens notebooks wherever the user keeps them; recovery and Recent live
    // in the app's data folder.
    notebooksAnywhere: true,
    dataDir: join(app.getPath('userData'), 'lab'),
    // Native dialogs start in the scenarios (or notebooks) folder; the service rejects a
    // scenario outside the scenarios folder. Filters match the last extension only, hence 'yaml'.
    nativePicker: async (purpose, defaultPath, kind) => {
      const win = BrowserWindow.getFocusedWindow() ?? BrowserWindow.getAllWindows()[0]
      const filters = [
        { name: kind === 'notebook' ? 'Lab notebooks (*.mnlab.yaml)' : 'Scenarios', extensions: ['yaml'] },
      ]
      if (purpose === 'open') {
        const r = win
          ? await dialog.showOpenDialog(win, { defaultPath, filters, properties: ['openFile'] })
          : await dialog.showOpenDialog({ defaultPath, filters, properties: ['openFile'] })
        return r.canceled ? null : (r.filePaths[0] ?? null)
      }
      const r = win
        ? await dialog.showSaveDialog(win, { defaultPath, filters })
        : await dialog.showSaveDialog({ defaultPath, filters })
      return r.canceled ? null : (r.filePath ?? null)
    },
  })
  registerApi(service)
  createWindow()
  app.on('activate', () => {
    if (BrowserWindow.getAllWindows().length === 0) createWindow()
  })
  app.on('will-quit', () => void service.close())
})

app.on('window-all-closed', () => {
  if (process.platform !== 'darwin') app.quit()
})
