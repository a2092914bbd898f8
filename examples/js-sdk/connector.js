// A weir source connector in JavaScript with the weir-plugin helper: reads a REST
// collection (json-server style: `GET /people?id_gte=6&_sort=id&_limit=7`) page by
// page, keyset-paged on `id`, so the cursor is the last id read and a later run
// reads only the records added since (incremental reads). Ids stay exact: they
// are parsed from the JSON text as BigInt, not as Numbers.
// Build: see README.md (rolldown, then jco componentize --backend qjs --backend-qjs-disable-async).
import { send } from 'weir:plugin/http@0.1.0';
import { defineConnector, httpGet, ConnectionFailed, InvalidConfig, log } from 'weir-plugin';

// JSON.parse would round ids beyond 2^53: quote every `"id": 123` first.
const parseItems = (text) => JSON.parse(text.replace(/"id"\s*:\s*(-?\d+)/g, '"id":"$1"'))
  .map((item) => ({ ...item, id: BigInt(item.id) }));

export const connector = defineConnector({
  name: 'rest-people-js',
  version: '0.1.0',
  description: 'Reads a REST collection page by page, incrementally by id (JavaScript, weir-plugin helper).',
  capabilities: ['http'],
  options: [
    { name: 'base_url', description: 'The API\'s base URL, e.g. http://127.0.0.1:3000.', required: true },
    { name: 'collection', description: 'The collection to read.', default: 'people' },
  ],
  entities(config) {
    return [{
      name: config.collection,
      fields: [{ name: 'id', type: 'integer', required: true }, { name: 'name' }, { name: 'email' }, { name: 'country' }],
      key: ['id'],
    }];
  },
  check(config) {
    const { status } = httpGet(send, url(config, '_limit=1'));
    if (status !== 200) throw new ConnectionFailed(`GET ${config.collection}: HTTP ${status}`, { transient: false });
  },
  readPage(config, entity, cursor, maxRecords) {
    const after = cursor === null ? null : BigInt(cursor);
    const query = `_sort=id&_order=asc&_limit=${maxRecords}` + (after === null ? '' : `&id_gte=${after + 1n}`);
    const { status, body } = httpGet(send, url(config, query));
    if (status !== 200) throw new ConnectionFailed(`GET ${entity.name}: HTTP ${status}`, { transient: false });
    const rows = parseItems(body).map((i) => ({ id: i.id, name: i.name ?? null, email: i.email ?? null, country: i.country ?? null }));
    log.debug('page read', { entity: entity.name, after: after ?? '', records: rows.length });
    const last = rows.length ? rows[rows.length - 1].id : after;
    return { rows, nextCursor: last === null ? null : String(last), done: rows.length < maxRecords };
  },
});

function url(config, query) {
  const base = config.require('base_url').replace(/\/+$/, '');
  if (!/^https?:\/\//.test(base)) throw new InvalidConfig(`option \`base_url\`: \`${base}\` is not an http(s) URL`);
  return `${base}/${config.collection}?${query}`;
}
