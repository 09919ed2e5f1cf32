// Electron main process: window lifecycle only; everything else goes behind LabApi (src-main/api).
// NOTE: this cannot be launched on our dev/CI machines (no Electron binary is obtainable offline);
// it is only built by `electron-vite build` and type-checked. Keep it tiny.
import { join } from 'node:path'
import { app, BrowserWindow } from 'electron'

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
  // electron-vite sets ELECTRON_RENDERER_URL in dev; a build loads the bundled renderer from disk.
  const devUrl = process.env['ELECTRON_RENDERER_URL']
  if (devUrl) void win.loadURL(devUrl)
  else void win.loadFile(join(__dirname, '../renderer/index.html'))
}

void app.whenReady().then(() => {
  createWindow()
  app.on('activate', () => {
    if (BrowserWindow.getAllWindows().length === 0) createWindow()
  })
})

app.on('window-all-closed', () => {
  if (process.platform !== 'darwin') app.quit()
})
