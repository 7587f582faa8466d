// Takes the README's picture of the demo: the page at URL (as `./dev demo` prints it), served
// by the demo server on that URL's port, in headless Chromium once its live stream is open.
//
//   node demo/screenshot.mjs URL OUT.png      (`./dev demo --screenshot` runs it)
import { startDemoServer } from "./serve.mjs";
import { launchChromium } from "./test/browser.mjs";

const [url, out] = process.argv.slice(2);
if (!url || !out) throw new Error("usage: node demo/screenshot.mjs URL OUT.png");

const demo = await startDemoServer({ port: Number(new URL(url).port) });
const browser = await launchChromium();
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 760, height: 300 }); // fullPage: as tall as the feed
  await page.goto(url);
  await page.waitForFunction(
    () =>
      document.querySelector("#live")?.dataset.state === "open" &&
      [...document.querySelectorAll(".post")].every(
        (post) => post.dataset.likes === "0" || post.querySelector(".likers-list")?.textContent !== "nobody yet",
      ),
    { timeout: 15_000 },
  );
  await page.screenshot({ path: out, fullPage: true });
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
  demo.server.close();
}
