/**
 * Notes' Markdown as HTML, shared by the HTML export (src-main/node/notebook/export.ts) and the
 * workbench's notebook view, so a note looks the same in both. Rendered by markdown-it (CommonMark)
 * with raw HTML off: a note's `<script>`, `<img onerror>` or `<iframe>` comes out as text. Links
 * keep only http, https and mailto targets; images are not rendered (the export is
 * self-contained and the app's CSP loads nothing remote), so `![x](y)` stays text. Pure, no DOM.
 */
import MarkdownIt from 'markdown-it'

export function escapeHtml(s: string): string {
  return s
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;')
}

/** Link targets a note may use; anything else (javascript:, data:, file:, relative) stays text. */
const SAFE_LINK = /^(https?:|mailto:)/i

const md = new MarkdownIt('default', { html: false, linkify: false, typographer: false })
md.disable('image')
md.validateLink = (url: string): boolean => SAFE_LINK.test(url.trim())

// A note's `#` is an h2: the notebook's title is the page's h1 (export.ts, NotebookView.vue).
for (const rule of ['heading_open', 'heading_close'] as const) {
  md.renderer.rules[rule] = (tokens, idx, options, _env, self) => {
    const t = tokens[idx]!
    t.tag = `h${Math.min(6, Number(t.tag.slice(1)) + 1)}`
    return self.renderToken(tokens, idx, options)
  }
}

/** Markdown to HTML (CommonMark, no raw HTML, http/https/mailto links only). */
export function markdownToHtml(text: string): string {
  return md.render(text).trimEnd()
}
