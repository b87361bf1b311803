// The browser the client checks drive: Debian's Chromium, headless, through
// playwright-core, in a fresh profile per run, so nothing an earlier run left
// in the browser (local storage, cookies, a cached preflight) can make this
// one pass.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

export async function launchChromium(name) {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), `latchkey-${name}-`));
  const removeProfile = () => fs.rmSync(userDataDir, { recursive: true, force: true });
  let context;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: '/usr/bin/chromium',
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--no-first-run',
      ],
    });
  } catch (e) {
    removeProfile();
    throw e;
  }
  const page = context.pages()[0] ?? (await context.newPage());
  const close = async () => {
    await context.close().catch(() => {});
    removeProfile();
  };
  return { context, page, close, removeProfile };
}
