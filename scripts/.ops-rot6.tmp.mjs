import winston from 'winston';
import { readdirSync, readFileSync, mkdtempSync } from 'node:fs';
const dir = mkdtempSync('/tmp/opslog-');
const [mode, tail] = process.argv.slice(2);
const log = winston.createLogger({ format: winston.format.json(), transports: [new winston.transports.File({ filename: dir + '/agent.log', maxsize: 4096, maxFiles: 100, tailable: tail === 't', lazy: process.env.LAZY === '1' })] });
for (let i = 0; i < 400; i++) { log.info(`line ${i}`, { i, pad: 'x'.repeat(80) }); await new Promise((r) => mode === 'imm' ? setImmediate(r) : setTimeout(r, Number(mode))); }
setTimeout(() => { let all = []; for (const f of readdirSync(dir).sort()) { const t = readFileSync(dir + '/' + f, 'utf8'); const ls = t.split('\n').filter(Boolean).map(l => JSON.parse(l).i); all.push(...ls); console.log(f, t.length, ls[0], ls.at(-1), ls.length); } console.log('total', all.length, 'unique', new Set(all).size); }, 1000);
