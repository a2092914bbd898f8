// weir-plugin: write weir plugins in JavaScript (jco componentize, QuickJS or
// StarlingMonkey). Rows or columns in and out instead of byte buffers and
// offsets; typed errors; logging into weir's execution log; and exact 64-bit
// integers: integer and timestamp values are BigInt in your code whatever the
// engine hands over. QuickJS hands s64 over as a Number, so a value beyond
// ±2^53 has already been rounded when it arrives: such a record fails with a
// message instead of being passed on wrong, and a BigInt the engine cannot
// return exactly fails its record too (never a silent rounding).
import { log as hostLog } from 'weir:plugin/log@0.1.0';

export const TYPES = ['boolean', 'integer', 'float', 'decimal', 'text', 'timestamp', 'bytes'];

// ------------------------------------------------------------------ errors

/** A whole call failed: the configuration is wrong (never retried). */
export class InvalidConfig extends Error {
  toWit() { return { tag: 'invalid-config', val: this.message }; }
}
/** The connection failed; transient ones are retried by weir. */
export class ConnectionFailed extends Error {
  constructor(message, { transient = true, retryAfterMs } = {}) {
    super(message);
    this.transient = transient;
    this.retryAfterMs = retryAfterMs;
  }
  toWit() {
    return { tag: 'connection', val: { message: this.message, transient: this.transient, retryAfterMs: this.retryAfterMs } };
  }
}
/** A bug in the plugin. */
export class Internal extends Error {
  toWit() { return { tag: 'internal', val: this.message }; }
}
/** One record cannot be transformed or read; the rest of the batch goes on. */
export class RecordFailed extends Error {
  constructor(message, field) {
    super(message);
    this.field = field;
  }
  toWit() { return { message: this.message, field: this.field }; }
}

// A call's failure as the contract's error: typed errors as they are, anything
// else as `internal` with its message (a message, not a trap).
function call(f) {
  try {
    return f();
  } catch (e) {
    if (e && typeof e.toWit === 'function' && !(e instanceof RecordFailed)) throw e.toWit();
    throw { tag: 'internal', val: `${(e && e.name) || 'Error'}: ${(e && e.message) || String(e)}` };
  }
}

// ------------------------------------------------------------------ logging

function emit(level, message, fields = {}) {
  hostLog(level, String(message), Object.entries(fields).map(([k, v]) => [String(k), String(v)]));
}
/** `log.info('page read', { page: 3 })`: lines in weir's execution log. */
export const log = {
  trace: (m, f) => emit('trace', m, f),
  debug: (m, f) => emit('debug', m, f),
  info: (m, f) => emit('info', m, f),
  warn: (m, f) => emit('warn', m, f),
  error: (m, f) => emit('error', m, f),
};
// The component's own stdout is discarded by the host: console output goes to the log.
if (typeof globalThis.console === 'object') {
  const join = (args) => args.map((a) => (typeof a === 'string' ? a : String(a))).join(' ');
  for (const [name, level] of [['log', 'info'], ['info', 'info'], ['debug', 'debug'], ['warn', 'warn'], ['error', 'error']]) {
    try { globalThis.console[name] = (...args) => emit(level, join(args)); } catch (_) { /* read-only console */ }
  }
}

// ------------------------------------------------------------------ UTF-8
// Written out here: TextEncoder/TextDecoder are not in every engine.

function utf8Decode(bytes, start, end) {
  let s = '';
  for (let i = start; i < end;) {
    const b = bytes[i];
    let cp;
    if (b < 0x80) { cp = b; i += 1; }
    else if (b < 0xe0) { cp = ((b & 0x1f) << 6) | (bytes[i + 1] & 0x3f); i += 2; }
    else if (b < 0xf0) { cp = ((b & 0x0f) << 12) | ((bytes[i + 1] & 0x3f) << 6) | (bytes[i + 2] & 0x3f); i += 3; }
    else { cp = ((b & 0x07) << 18) | ((bytes[i + 1] & 0x3f) << 12) | ((bytes[i + 2] & 0x3f) << 6) | (bytes[i + 3] & 0x3f); i += 4; }
    s += String.fromCodePoint(cp);
  }
  return s;
}

function utf8Push(out, s) {
  for (const ch of s) {
    const cp = ch.codePointAt(0);
    if (cp < 0x80) out.push(cp);
    else if (cp < 0x800) out.push(0xc0 | (cp >> 6), 0x80 | (cp & 0x3f));
    else if (cp < 0x10000) out.push(0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
    else out.push(0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 0x3f), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f));
  }
}

// ------------------------------------------------------------------ batches

const S64_MIN = -(2n ** 63n);
const S64_MAX = 2n ** 63n - 1n;
// How this engine hands over and takes back s64 lists: 'bigint' (typed arrays,
// StarlingMonkey) or 'number' (plain Arrays of Numbers, QuickJS). Learnt from
// the first integer column received; QuickJS (the default engine) until then.
let s64As = 'number';

/** Declares how the engine carries s64 (`'bigint'` or `'number'`) before any batch arrived. */
export function setS64Representation(kind) { s64As = kind; }

function toBigInt(v, column, i, failures) {
  if (typeof v === 'bigint') { s64As = 'bigint'; return v; }
  if (!Number.isSafeInteger(v)) {
    if (!failures.has(i)) {
      failures.set(i, new RecordFailed(`column \`${column}\`, record ${i}: the JS engine handed over ${v}, beyond ±2^53, so it may already be rounded; refused rather than passed on wrong (use an engine that carries s64 as BigInt, or Rust)`, column));
    }
    return null;
  }
  return BigInt(v);
}

function typeOf(tag) { return tag; }

/** A contract batch as `{ name: values[] }` (the fast path), with `null` for nulls.
 * Integers and timestamps are BigInt; bytes are Uint8Array. */
export function columnsOf(batch, failures = new Map()) {
  const n = batch.len;
  const out = {};
  for (const c of batch.columns) {
    const tag = c.values.tag;
    const v = c.values.val;
    let values;
    if (tag === 'text' || tag === 'decimal') {
      const { data, offsets } = v;
      values = new Array(n);
      for (let i = 0; i < n; i++) values[i] = utf8Decode(data, offsets[i], offsets[i + 1]);
    } else if (tag === 'bytes') {
      values = new Array(n);
      for (let i = 0; i < n; i++) values[i] = Uint8Array.from(Array.prototype.slice.call(v.data, v.offsets[i], v.offsets[i + 1]));
    } else if (tag === 'integer' || tag === 'timestamp') {
      values = new Array(n);
      for (let i = 0; i < n; i++) values[i] = (c.nulls.length && c.nulls[i]) ? null : toBigInt(v[i], c.name, i, failures);
    } else {
      values = Array.from(v);
    }
    if (c.nulls.length) for (let i = 0; i < n; i++) if (c.nulls[i]) values[i] = null;
    out[c.name] = values;
  }
  return out;
}

/** The fields of a contract batch: `[{ name, type }]`. */
export function fieldsOf(batch) {
  return batch.columns.map((c) => ({ name: c.name, type: typeOf(c.values.tag) }));
}

/** A contract batch as one object per record. */
export function rowsOf(batch, failures = new Map()) {
  const cols = columnsOf(batch, failures);
  const names = Object.keys(cols);
  const rows = new Array(batch.len);
  for (let i = 0; i < batch.len; i++) {
    const r = {};
    for (const k of names) r[k] = cols[k][i];
    rows[i] = r;
  }
  return rows;
}

function problem(type, v) {
  switch (type) {
    case 'integer': case 'timestamp':
      if (typeof v === 'number') {
        if (!Number.isSafeInteger(v)) return `${v} is not an integer within ±2^53 (use a BigInt)`;
        return null;
      }
      if (typeof v !== 'bigint') return `\`${v}\` is not an integer`;
      if (v < S64_MIN || v > S64_MAX) return `${v} does not fit a 64-bit integer`;
      if (s64As === 'number' && (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER))) {
        return `${v} is beyond ±2^53, which this JS engine (QuickJS) cannot return exactly; refused rather than rounded`;
      }
      return null;
    case 'float': return typeof v === 'number' ? null : `\`${v}\` is not a number`;
    case 'boolean': return typeof v === 'boolean' ? null : `\`${v}\` is not true or false`;
    case 'text': case 'decimal': return typeof v === 'string' ? null : `\`${v}\` is not text`;
    case 'bytes': return (v instanceof Uint8Array || Array.isArray(v)) ? null : `\`${v}\` is not bytes`;
    default: return `unknown type \`${type}\``;
  }
}

function encode(field, values, failures) {
  const n = values.length;
  const nulls = new Array(n).fill(false);
  let anyNull = false;
  const ok = (i) => {
    const v = values[i];
    if (v === null || v === undefined) return false;
    const p = problem(field.type, v);
    if (p) {
      if (!failures.has(i)) failures.set(i, new RecordFailed(`column \`${field.name}\`: ${p}`, field.name));
      return false;
    }
    return true;
  };
  let val;
  if (field.type === 'text' || field.type === 'decimal' || field.type === 'bytes') {
    const data = [];
    const offsets = [0];
    for (let i = 0; i < n; i++) {
      if (ok(i)) {
        if (field.type === 'bytes') for (const b of values[i]) data.push(b);
        else utf8Push(data, values[i]);
      } else { nulls[i] = true; anyNull = true; }
      offsets.push(data.length);
    }
    val = { data: Uint8Array.from(data), offsets: Uint32Array.from(offsets) };
  } else {
    const zero = field.type === 'boolean' ? false : (field.type === 'float' ? 0 : 0n);
    const clean = new Array(n);
    for (let i = 0; i < n; i++) {
      if (ok(i)) clean[i] = values[i];
      else { clean[i] = zero; nulls[i] = true; anyNull = true; }
    }
    if (field.type === 'integer' || field.type === 'timestamp') {
      val = s64As === 'bigint' ? BigInt64Array.from(clean, (x) => BigInt(x)) : clean.map((x) => Number(x));
    } else if (field.type === 'float') {
      val = s64As === 'bigint' ? Float64Array.from(clean) : clean;
    } else {
      val = clean;
    }
  }
  return { name: field.name, values: { tag: field.type, val }, nulls: anyNull ? nulls : [] };
}

/** A contract batch of `n` records from `{ name: values[] }` (missing columns are null). */
export function batchOfColumns(fields, columns, n, failures = new Map()) {
  return {
    len: n,
    columns: fields.map((f) => {
      const values = columns[f.name] || new Array(n).fill(null);
      if (values.length !== n) throw new Internal(`column \`${f.name}\` has ${values.length} values for ${n} records`);
      return encode(f, values, failures);
    }),
  };
}

/** A contract batch from one object per record (`null` for a failed record). */
export function batchOfRows(fields, rows, failures = new Map()) {
  const cols = {};
  for (const f of fields) cols[f.name] = rows.map((r) => (r ? r[f.name] ?? null : null));
  return batchOfColumns(fields, cols, rows.length, failures);
}

// ------------------------------------------------------------------ plugins

function configOf(options, pairs) {
  const c = {};
  for (const o of options || []) if (o.default !== undefined) c[o.name] = o.default;
  for (const [k, v] of pairs) c[k] = v;
  Object.defineProperty(c, 'require', {
    enumerable: false,
    value: (name) => {
      if (c[name] === undefined || c[name] === '') throw new InvalidConfig(`option \`${name}\` is required`);
      return c[name];
    },
  });
  return c;
}

function info(p, capabilities = []) {
  return {
    name: p.name,
    version: p.version || '0.1.0',
    description: p.description || '',
    config: (p.options || []).map((o) => ({
      name: o.name, description: o.description || '', required: !!o.required, secret: !!o.secret, defaultValue: o.default,
    })),
    capabilities,
  };
}

const toWitField = (f) => ({ name: f.name, type: f.type || 'text', required: !!f.required, description: f.description || '' });
const ofWitField = (f) => ({ name: f.name, type: f.type, required: f.required, description: f.description });

/** A transform export: `export const transform = defineTransform({ name, options,
 * outputFields(config, fields), row(config, row) | columns(config, cols, n, failures) })`. */
export function defineTransform(p) {
  const outputFields = (c, fields) => (p.outputFields ? p.outputFields(c, fields) : fields);
  return {
    describe: () => info(p),
    outputSchema: (config, input) => call(() => outputFields(configOf(p.options, config), input.map(ofWitField)).map(toWitField)),
    transform: (config, records) => call(() => {
      const c = configOf(p.options, config);
      const n = records.len;
      const failures = new Map();
      const fields = outputFields(c, fieldsOf(records));
      let out;
      if (p.columns) {
        out = p.columns(c, columnsOf(records, failures), n, failures);
      } else {
        const rows = rowsOf(records, failures).map((row, i) => {
          if (failures.has(i)) return null;
          try { return p.row(c, row); } catch (e) {
            if (e instanceof RecordFailed) { failures.set(i, e); return null; }
            throw e;
          }
        });
        return finish(batchOfRows(fields, rows, failures), failures);
      }
      return finish(batchOfColumns(fields, out, n, failures), failures);
    }),
  };
}

function finish(records, failures) {
  const list = [...failures.entries()].sort((a, b) => a[0] - b[0]).map(([index, e]) => ({ index, error: e.toWit() }));
  return { records, failures: list };
}

/** A source connector export: `export const connector = defineConnector({ name, options,
 * entities(config), readPage(config, entity, cursor, maxRecords) → { rows, nextCursor, done },
 * check(config) })`. Destinations implement `openWriter` themselves for now. */
export function defineConnector(p) {
  const entities = (c) => p.entities(c).map((e) => ({
    name: e.name, fields: e.fields.map(toWitField), keyFields: e.key || [], readable: e.readable !== false, writable: !!e.writable,
  }));
  return {
    describe: () => info(p, p.capabilities || []),
    check: (config) => call(() => { if (p.check) p.check(configOf(p.options, config)); }),
    listOrganizations: (config) => call(() => (p.organizations ? p.organizations(configOf(p.options, config)) : [])),
    discover: (config, _org) => call(() => entities(configOf(p.options, config))),
    read: (config, request) => call(() => {
      const c = configOf(p.options, config);
      const found = p.entities(c).find((e) => e.name === request.entity);
      if (!found) throw new InvalidConfig(`no entity \`${request.entity}\``);
      const entity = { ...found, fields: found.fields.map((f) => ({ ...f, type: f.type || 'text' })) };
      const page = p.readPage(c, entity, request.cursor ?? null, request.maxRecords);
      const failures = new Map();
      batchOfRows(entity.fields, page.rows, failures);
      const keep = page.rows.filter((_, i) => !failures.has(i));
      const rejected = [...failures.entries()].map(([i, e]) => ({
        position: `record ${i} of the page`,
        key: (entity.key || []).map((k) => String(page.rows[i][k])).join(',') || undefined,
        error: e.toWit(),
      }));
      return { records: batchOfRows(entity.fields, keep), rejected, nextCursor: page.nextCursor ?? undefined, done: !!page.done };
    }),
    openWriter: () => call(() => { throw new InvalidConfig(`${p.name} is not a destination`); }),
  };
}

/** GET through weir's `http` import: pass the import's `send` (only connectors have it).
 * Returns `{ status, body }` (body as text); transport failures throw ConnectionFailed. */
export function httpGet(send, url, headers = []) {
  let r;
  try {
    r = send({ method: 'GET', url, headers, body: new Uint8Array(0) });
  } catch (e) {
    const err = (e && e.payload) || e;
    if (err && err.tag === 'denied') throw new InvalidConfig(`GET ${url}: not granted to this connection (${err.val})`);
    throw new ConnectionFailed(`GET ${url}: ${(err && err.tag) || err} ${(err && err.val) || ''}`, { transient: true });
  }
  if (r.status === 429 || r.status >= 500) throw new ConnectionFailed(`GET ${url}: HTTP ${r.status}`);
  return { status: r.status, body: utf8Decode(r.body, 0, r.body.length) };
}
