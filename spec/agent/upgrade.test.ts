import { describe, expect, it } from '@jest/globals';
import { PassThrough } from 'node:stream';
import { FakeClock } from '../fixtures/fake-clock.js';
import { createLogger } from '../../lib/log/index.js';
import { OutpostError } from '../../lib/util/errors.js';
import { UpgradeNotice } from '../../lib/agent/upgrade.js';
import { codeForHttpStatus, HTTP_STATUS_BY_CODE, isRetryableHttpStatus } from '../../lib/protocol/errors.js';

/** The agent's version notices (pure logic on a FakeClock): one line an hour, long waits after 426. */
function setup(version: string) {
  const clock = new FakeClock();
  const lines: Array<Record<string, unknown>> = [];
  const stream = new PassThrough();
  stream.on('data', (b: Buffer) => b.toString().split('\n').filter((l) => l.trim()).forEach((l) => lines.push(JSON.parse(l) as Record<string, unknown>)));
  const notice = new UpgradeNotice({ clock, log: createLogger({ stream, level: 'info' }) }, { version });
  return { clock, lines, notice };
}
const flush = () => new Promise((r) => setImmediate(r));

describe('UpgradeNotice', () => {
  it('426 is upgrade_required, not retryable', () => {
    expect(HTTP_STATUS_BY_CODE.upgrade_required).toBe(426);
    expect(codeForHttpStatus(426)).toBe('upgrade_required');
    expect(isRetryableHttpStatus(426)).toBe(false);
  });

  it('warns once an hour while older than latestVersion, naming both and how to upgrade', async () => {
    const { clock, lines, notice } = setup('0.1.0');
    for (let i = 0; i < 100; i++) notice.answered({ latestVersion: '0.2.0', minVersion: '0.1.0' });
    await clock.advance(3_599_000);
    notice.answered({ latestVersion: '0.2.0' });
    await clock.advance(1000);
    notice.answered({ latestVersion: '0.2.0' });
    await flush();
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ level: 'warn', version: '0.1.0', latestVersion: '0.2.0', minVersion: '0.1.0' });
    expect(String(lines[0]!.message)).toMatch(/version 0\.1\.0.*names 0\.2\.0 as the latest.*restart the agent service/);
  });

  it('says nothing when current, newer, or the proxy names no (or a bad) version', async () => {
    const { lines, notice } = setup('0.2.0');
    notice.answered({ latestVersion: '0.2.0' });
    notice.answered({ latestVersion: '0.1.9' });
    notice.answered({});
    notice.answered({ latestVersion: 'banana' });
    await flush();
    expect(lines).toHaveLength(0);
  });

  it('a 426: one error an hour, a wait from Retry-After within [30 s, 5 min], 5 min without it', async () => {
    const { clock, lines, notice } = setup('0.1.0');
    const err = (ms?: number) => new OutpostError('upgrade_required', 'the integration-proxy answered 426 on /agent/lease: install 0.3.0', ms === undefined ? {} : { retryAfterMs: ms });
    expect(UpgradeNotice.isRefusal(err())).toBe(true);
    expect(UpgradeNotice.isRefusal(new OutpostError('unavailable', 'x'))).toBe(false);
    expect(notice.refused(err(300_000))).toBe(300_000);
    expect(notice.refused(err())).toBe(300_000);
    expect(notice.refused(err(1000))).toBe(30_000);
    expect(notice.refused(err(86_400_000))).toBe(300_000);
    await clock.advance(3_600_000);
    notice.refused(err());
    await flush();
    expect(lines.filter((l) => l.level === 'error')).toHaveLength(2);
    expect(String(lines[0]!.message)).toMatch(/refuses this agent's version 0\.1\.0.*install 0\.3\.0/);
  });
});
