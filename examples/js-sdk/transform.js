// A weir transform in JavaScript with the weir-plugin helper: looks a code up in
// a table from the configuration (`country = FR` → `country_name = France`).
// Build: see README.md (jco componentize --backend qjs --backend-qjs-disable-async --bundle).
import { defineTransform, InvalidConfig, RecordFailed, log } from 'weir-plugin';

function table(config) {
  const pairs = new Map();
  for (const item of config.require('table').split(';')) {
    const at = item.indexOf('=');
    if (at < 1) throw new InvalidConfig(`option \`table\`: \`${item}\` is not CODE=NAME`);
    pairs.set(item.slice(0, at).trim(), item.slice(at + 1).trim());
  }
  return pairs;
}

export const transform = defineTransform({
  name: 'country-lookup-js',
  version: '0.1.0',
  description: 'Adds the name of a code from a lookup table (JavaScript, weir-plugin helper).',
  options: [
    { name: 'field', description: 'The field holding the code.', default: 'country' },
    { name: 'into', description: 'The field to add with the looked-up name.', default: 'country_name' },
    { name: 'table', description: 'CODE=NAME pairs separated by `;`.', required: true },
    { name: 'missing', description: 'A code not in the table: `fail` the record or leave the name `null`.', default: 'fail' },
  ],
  outputFields(config, fields) {
    if (!fields.some((f) => f.name === config.field)) throw new InvalidConfig(`no input field \`${config.field}\``);
    table(config);
    return [...fields.filter((f) => f.name !== config.into), { name: config.into, type: 'text' }];
  },
  // Columnar: one array per field, no object per record (the fast path).
  columns(config, columns, n, failures) {
    const lookup = table(config);
    const codes = columns[config.field];
    let unknown = 0;
    columns[config.into] = codes.map((code, i) => {
      if (code === null) return null;
      const name = lookup.get(code);
      if (name === undefined) {
        unknown += 1;
        if (config.missing !== 'fail') return null;
        failures.set(i, new RecordFailed(`no entry for \`${code}\` in the lookup table`, config.field));
        return null;
      }
      return name;
    });
    if (unknown) log.warn('codes missing from the table', { count: unknown });
    return columns;
  },
});
