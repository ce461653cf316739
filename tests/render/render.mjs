// Render Markdown pages as GitHub does, in headless Chromium, and report what
// did not render.
//
//   node tests/render/render.mjs [--screenshots DIR] [--chromium PATH] FILE.md ...
//
// prints one JSON object: { "pages": [ { "file", "math", "mathErrors": [...],
// "hazards": [...], "mermaidBlocks", "mermaidDrawn", "mermaidErrors": [...],
// "mermaidScale" (the smallest scale a diagram is drawn at in a 980 px column) } ] }
// and exits 0 (the caller, tests/test_render.py, judges).
//
// How a page is rendered (no network: every script is a file:// path into
// node_modules):
//   - Markdown: markdown-it in CommonMark mode with GFM tables and raw HTML,
//     plus GitHub's math syntax (githubMath below): $`...`$ and ```math are raw
//     TeX; $...$ and $$...$$ are TeX *after GitHub's Markdown has taken its
//     backslash escapes*: GitHub's math extension drops the backslash of a
//     Markdown escape (\\ \{ \} \_ \, \; \! \|), so \\ in a $$ matrix loses its
//     line break and \{ loses its brace. We do the same, and also report every
//     such sequence as a hazard, so a page is judged at least as strictly as
//     GitHub would render it.
//   - MathJax 3 (tex-svg-full, no `noundefined`: an unknown macro is an error,
//     not red text) typesets every math span; errors are mjx-merror elements
//     or data-mjx-error attributes.
//   - mermaid draws every ```mermaid block; a block is drawn if it holds an svg
//     that is not mermaid's error picture.
// Chromium loads the page with --dump-dom and a virtual time budget; the page
// writes its verdict into <pre id="render-result">.

import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync, mkdtempSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import MarkdownIt from "markdown-it";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const MODULES = path.join(HERE, "node_modules");
const MATHJAX = pathToFileURL(path.join(MODULES, "mathjax", "es5", "tex-svg-full.js")).href;
const MERMAID = pathToFileURL(path.join(MODULES, "mermaid", "dist", "mermaid.min.js")).href;

// ---------------------------------------------------------------------------
// GitHub's math syntax for markdown-it

const ESCAPABLE = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

function githubUnescape(tex) {
  // what GitHub's Markdown leaves of a $...$ / $$...$$ span: a backslash before
  // ASCII punctuation is a Markdown escape and disappears
  return tex.replace(/\\([!-/:-@[-`{-~])/g, (m, c) => (ESCAPABLE.includes(c) ? c : m));
}

function hazards(tex) {
  const found = [];
  const re = /\\([!-/:-@[-`{-~])/g;
  let m;
  while ((m = re.exec(tex)) !== null) found.push("\\" + m[1]);
  return [...new Set(found)];
}

function escapeHtml(s) {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

function githubMath(md, report) {
  // $`...`$: raw TeX inside a code span (GitHub's safe inline form)
  // $$...$$ and $...$: TeX after Markdown's backslash escapes
  md.inline.ruler.before("backticks", "github_math", (state, silent) => {
    const src = state.src;
    let pos = state.pos;
    if (src.charCodeAt(pos) !== 0x24 /* $ */) return false;
    if (pos > 0 && src[pos - 1] === "\\") return false;
    // $`...`$
    if (src[pos + 1] === "`") {
      let ticks = 0;
      while (src[pos + 1 + ticks] === "`") ticks++;
      const fence = "`".repeat(ticks) + "$";
      const end = src.indexOf(fence, pos + 1 + ticks);
      if (end < 0) return false;
      if (!silent) {
        const token = state.push("math_inline", "math", 0);
        token.content = src.slice(pos + 1 + ticks, end);
        token.meta = { form: "$`...`$" };
      }
      state.pos = end + fence.length;
      return true;
    }
    const display = src[pos + 1] === "$";
    const open = display ? 2 : 1;
    const start = pos + open;
    if (!display && (start >= src.length || /\s/.test(src[start]))) return false;
    let end = start;
    for (;;) {
      end = src.indexOf(display ? "$$" : "$", end);
      if (end < 0) return false;
      if (src[end - 1] === "\\") { end += 1; continue; }
      break;
    }
    const raw = src.slice(start, end);
    if (raw.includes("`")) {
      // a $ pairing across a code span: GitHub's pairing is not ours to guess
      report.hazards.push({ tex: raw, problem: "a $ pairs with another across a code span" });
      return false;
    }
    if (!display && (raw.length === 0 || /\s$/.test(raw))) return false;
    if (!silent) {
      const token = state.push(display ? "math_display" : "math_inline", "math", 0);
      token.content = githubUnescape(raw);
      token.meta = { form: display ? "$$...$$" : "$...$" };
      for (const h of hazards(raw)) {
        report.hazards.push({ tex: raw.trim().slice(0, 160), problem: `GitHub's Markdown takes the backslash of ${h} in ${token.meta.form}` });
      }
    }
    state.pos = end + open;
    return true;
  });
  md.renderer.rules.math_inline = (tokens, i) =>
    `<span class="math">\\(${escapeHtml(tokens[i].content)}\\)</span>`;
  md.renderer.rules.math_display = (tokens, i) =>
    `<span class="math display">\\[${escapeHtml(tokens[i].content)}\\]</span>`;
  const fence = md.renderer.rules.fence;
  md.renderer.rules.fence = (tokens, i, options, env, self) => {
    const info = tokens[i].info.trim().split(/\s+/)[0];
    if (info === "math") return `<div class="math display">\\[${escapeHtml(tokens[i].content)}\\]</div>\n`;
    if (info === "mermaid") return `<pre class="mermaid">${escapeHtml(tokens[i].content)}</pre>\n`;
    return fence(tokens, i, options, env, self);
  };
}

// ---------------------------------------------------------------------------
// the page: every Markdown file is a <template>; the script typesets them one
// after the other in one tab (MathJax and mermaid load once) and writes one
// verdict per file

const CHECK_SCRIPT = `
<script>
window.MathJax = {
  loader: { load: [] },
  tex: { inlineMath: [['\\\\(', '\\\\)']], displayMath: [['\\\\[', '\\\\]']], processEscapes: false,
         packages: { '[-]': ['noundefined'] } },
  options: { ignoreHtmlClass: 'markdown-body', processHtmlClass: 'math', enableMenu: false },
  startup: { typeset: false },
};
</script>
<script src="${MATHJAX}"></script>
<script src="${MERMAID}"></script>
<script>
async function check(article) {
  const result = { math: 0, mathErrors: [], mermaidBlocks: 0, mermaidDrawn: 0, mermaidErrors: [], mermaidScale: 1 };
  try {
    await MathJax.typesetPromise([article]);
    const spans = [...article.querySelectorAll('.math')];
    result.math = spans.length;
    for (const span of spans) {
      const bad = span.querySelector('mjx-merror, [data-mjx-error]');
      const drawn = span.querySelector('mjx-container svg');
      if (bad || !drawn) {
        const item = MathJax.startup.document.getMathItemsWithin(span)[0];
        result.mathErrors.push({
          tex: item ? item.math : span.textContent.slice(0, 200),
          error: bad ? (bad.getAttribute('data-mjx-error') || bad.textContent) : 'not typeset',
        });
      }
    }
  } catch (e) { result.mathErrors.push({ tex: '', error: 'MathJax failed: ' + e }); }
  try {
    const blocks = [...article.querySelectorAll('pre.mermaid')];
    result.mermaidBlocks = blocks.length;
    await mermaid.run({ nodes: blocks, suppressErrors: true });
    for (const block of blocks) {
      const svg = block.querySelector('svg');
      const error = !svg || svg.getAttribute('aria-roledescription') === 'error' || block.querySelector('.error-icon');
      if (error) result.mermaidErrors.push({ source: block.dataset.source || '', error: svg ? [...svg.querySelectorAll('text')].map((t) => t.textContent).join(' ').slice(0, 200) : 'no svg' });
      else {
        result.mermaidDrawn += 1;
        // the scale the page draws it at: below 1 the labels shrink with it
        const box = svg.viewBox && svg.viewBox.baseVal;
        if (box && box.width) result.mermaidScale = Math.min(result.mermaidScale, svg.getBoundingClientRect().width / box.width);
      }
    }
  } catch (e) { result.mermaidErrors.push({ source: '', error: 'mermaid failed: ' + e }); }
  return result;
}
(async () => {
  const results = {};
  try {
    await MathJax.startup.promise;
    mermaid.initialize({ startOnLoad: false, securityLevel: 'strict' });
    for (const template of document.querySelectorAll('template[data-file]')) {
      const article = document.createElement('article');
      article.className = 'markdown-body';
      article.appendChild(template.content.cloneNode(true));
      document.body.appendChild(article);
      results[template.dataset.file] = await check(article);
      if (!SCREENSHOT) { MathJax.typesetClear([article]); article.remove(); }
    }
  } catch (e) { results['*'] = { error: String(e) }; }
  const pre = document.createElement('pre');
  pre.id = 'render-result';
  pre.textContent = JSON.stringify(results);
  document.body.appendChild(pre);
})();
</script>`;

const STYLE = `<style>
body { max-width: 980px; margin: 0 auto; padding: 32px; font: 16px/1.5 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; }
table { border-collapse: collapse; } td, th { border: 1px solid #d0d7de; padding: 4px 10px; }
pre { background: #f6f8fa; padding: 12px; overflow: auto; } code { background: #f6f8fa; }
.math.display { display: block; text-align: center; margin: 12px 0; overflow-x: auto; }
#render-result { display: none; }
</style>`;

function markdownToHtml(markdown, report) {
  const md = new MarkdownIt("commonmark", { html: true });
  md.enable("table");
  md.enable("strikethrough");
  githubMath(md, report);
  // mermaid's source, kept for error messages
  return md.render(markdown).replace(/<pre class="mermaid">([\s\S]*?)<\/pre>/g,
    (m, src) => `<pre class="mermaid" data-source="${src.slice(0, 120)}">${src}</pre>`);
}

function page(files, screenshot) {
  const templates = files.map((f) => `<template data-file="${escapeHtml(f.file)}">${f.html}</template>`).join("\n");
  return `<!DOCTYPE html><html><head><meta charset="utf-8">${STYLE}</head><body>${templates}` +
    `<script>const SCREENSHOT = ${screenshot ? "true" : "false"};</script>${CHECK_SCRIPT}</body></html>`;
}

// ---------------------------------------------------------------------------
// Chromium

function run(cmd, args) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (err += d));
    child.on("close", (code) => resolve({ code, out, err }));
  });
}

function chromiumArgs(profile) {
  return ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--allow-file-access-from-files", `--user-data-dir=${profile}`, "--virtual-time-budget=600000",
    "--hide-scrollbars"];
}

async function load(chromium, html, work, name, extra) {
  const htmlPath = path.join(work, name + ".html");
  writeFileSync(htmlPath, html);
  const profile = mkdtempSync(path.join(work, "profile-"));
  return run(chromium, [...chromiumArgs(profile), ...extra, pathToFileURL(htmlPath).href]);
}

async function main() {
  const args = process.argv.slice(2);
  let screenshots = null;
  let chromium = process.env.CHROMIUM || "chromium";
  const names = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--screenshots") screenshots = path.resolve(args[++i]);
    else if (args[i] === "--chromium") chromium = args[++i];
    else names.push(path.resolve(args[i]));
  }
  for (const f of [MATHJAX, MERMAID]) {
    if (!existsSync(fileURLToPath(f))) throw new Error(`${fileURLToPath(f)} is missing: run npm ci in ${HERE}`);
  }
  const work = mkdtempSync(path.join(tmpdir(), "render-"));
  const files = names.map((file) => {
    const report = { file, hazards: [] };
    return { file, report, html: markdownToHtml(readFileSync(file, "utf8"), report) };
  });
  // one tab per core, each typesetting its share of the files
  const groups = Array.from({ length: Math.min(files.length, Math.max(1, availableParallelism())) }, () => []);
  files.forEach((f, i) => groups[i % groups.length].push(f));
  const results = {};
  await Promise.all(groups.map(async (group, g) => {
    const dumped = await load(chromium, page(group, false), work, `group${g}`, ["--dump-dom"]);
    const match = dumped.out.match(/<pre id="render-result">([\s\S]*?)<\/pre>/);
    if (!match) throw new Error("the page did not finish:\n" + dumped.err.slice(-2000));
    const text = match[1].replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"').replace(/&amp;/g, "&");
    const found = JSON.parse(text);
    if (found["*"]) throw new Error("the page failed: " + found["*"].error);
    Object.assign(results, found);
  }));
  const pages = files.map((f) => ({ ...f.report, ...results[f.file] }));
  if (screenshots) {
    mkdirSync(screenshots, { recursive: true });
    for (const [i, f] of files.entries()) {
      const png = path.join(screenshots, path.basename(f.file, ".md") + ".png");
      await load(chromium, page([f], true), work, `page${i}`, ["--window-size=1100,24000", `--screenshot=${png}`]);
      pages[i].screenshot = png;
    }
  }
  process.stdout.write(JSON.stringify({ pages }, null, 1) + "\n");
}

main().catch((e) => { process.stderr.write(String(e.stack || e) + "\n"); process.exit(2); });
