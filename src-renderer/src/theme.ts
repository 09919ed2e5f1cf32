/** Light/dark theme: follows prefers-color-scheme unless the user picked one. */
import { computed, ref } from 'vue'

export type ThemeChoice = 'system' | 'light' | 'dark'
const KEY = 'mnlab.theme'

function stored(): ThemeChoice {
  try {
    const v = localStorage.getItem(KEY)
    return v === 'light' || v === 'dark' ? v : 'system'
  } catch {
    return 'system'
  }
}

const media = window.matchMedia('(prefers-color-scheme: dark)')
const systemDark = ref(media.matches)
media.addEventListener('change', (e) => {
  systemDark.value = e.matches
})

export const themeChoice = ref<ThemeChoice>(stored())
export const isDark = computed(() =>
  themeChoice.value === 'system' ? systemDark.value : themeChoice.value === 'dark',
)

export function cycleTheme(): void {
  themeChoice.value =
    themeChoice.value === 'system' ? 'light' : themeChoice.value === 'light' ? 'dark' : 'system'
  try {
    localStorage.setItem(KEY, themeChoice.value)
  } catch {
    /* storage may be unavailable */
  }
}

/** Reads a CSS custom property of the document (for chart colours). */
export function cssVar(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim()
}
