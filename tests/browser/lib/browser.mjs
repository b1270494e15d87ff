// Headless Chromium (Debian's package) driven by playwright-core: no browser download.
import { existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));

/** Where the tests write the screenshots that README.md shows. */
export const SCREENSHOTS = path.resolve(here, "../../../docs/screenshots");

/** The Chromium binary: $CHROMIUM, else /usr/bin/chromium. */
export function chromiumPath() {
  const bin = process.env.CHROMIUM || "/usr/bin/chromium";
  if (!existsSync(bin)) {
    throw new Error(`${bin} does not exist: apt-get install -y chromium (or set CHROMIUM)`);
  }
  return bin;
}

/** Launches Chromium headless, offline from everything but 127.0.0.1. */
export function launch() {
  return chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    args: [
      "--no-sandbox",
      "--headless",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--disable-quic",
    ],
  });
}

/** Saves a screenshot of `page` as docs/screenshots/<name>.png. */
export async function screenshot(page, name, options = {}) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`), animations: "disabled", ...options });
}

/** A new page at `url` whose console errors fail the test that calls `errors()`. */
export async function open(context, url) {
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console error: ${m.text()}`);
  });
  await page.goto(url);
  page.problems = problems;
  return page;
}
