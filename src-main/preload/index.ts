// Sandboxed preload (must stay CommonJS: keep package.json free of "type": "module").
// One function per LabApi method (src-main/api/labApi.ts) will be added here, each a thin
// ipcRenderer.invoke('lab:<area>.<verb>', arg) wrapper. Never expose ipcRenderer itself.
import { contextBridge } from 'electron'

contextBridge.exposeInMainWorld('lab', {})
