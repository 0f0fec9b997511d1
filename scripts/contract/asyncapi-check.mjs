// AsyncAPI checks of Duet's realtime contract, with @asyncapi/parser (v3).
//
//   node asyncapi-check.mjs <path/to/asyncapi.yaml>
//
// Prints one line per check, "PASS <name>" or "FAIL <name>: <why>", and exits
// 1 when any failed. Checks:
//   asyncapi.yaml-unique-keys  the YAML has no repeated mapping key (js-yaml
//                              refuses them; a repeated key silently drops one)
//   asyncapi.validate          Parser.validate(): no diagnostic of severity error
//   asyncapi.payload-data      every message payload, as the parser resolved it,
//                              has a `data` property of type object with typed
//                              `properties` (or is a documented empty object:
//                              `additionalProperties: false` and no properties)
//   asyncapi.payload-type      every message payload's `type` property is a
//                              const or a one-value enum, equal to the message's
//                              `name`
import { readFileSync } from 'node:fs';
import yaml from 'js-yaml';
import parserPkg from '@asyncapi/parser';

const { Parser, DiagnosticSeverity } = parserPkg;

const file = process.argv[2];
if (!file) {
  console.error('usage: node asyncapi-check.mjs <asyncapi.yaml>');
  process.exit(2);
}
const text = readFileSync(file, 'utf8');
let failed = 0;
const pass = (name) => console.log(`PASS ${name}`);
const fail = (name, why) => {
  failed++;
  console.log(`FAIL ${name}: ${why}`);
};

// 1. No duplicate keys (js-yaml's default `json: false` throws on them).
try {
  yaml.load(text, { filename: file });
  pass('asyncapi.yaml-unique-keys');
} catch (e) {
  fail('asyncapi.yaml-unique-keys', String(e.message).split('\n')[0]);
}

// 2. The parser's own validation.
const parser = new Parser();
const severity = ['error', 'warning', 'information', 'hint'];
const diagnostics = await parser.validate(text, { source: file });
for (const d of diagnostics) {
  const where = d.path && d.path.length ? d.path.join('.') : '(document)';
  const line = d.range ? `:${d.range.start.line + 1}` : '';
  console.log(`  ${severity[d.severity] ?? d.severity} ${d.code} ${file}${line} ${where}: ${d.message}`);
}
const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
if (errors.length === 0) pass(`asyncapi.validate (${diagnostics.length} diagnostics, none an error)`);
else fail('asyncapi.validate', `${errors.length} diagnostics of severity error`);

// 3. and 4. Payload shapes, on the parsed (resolved) document.
const { document } = await parser.parse(text, { source: file });
if (!document) {
  fail('asyncapi.payload-data', 'the parser returned no document');
  fail('asyncapi.payload-type', 'the parser returned no document');
} else {
  // Schemas as the parser resolved them (plain JSON, $refs replaced), with
  // allOf read as "all of these apply": properties and constraints of every
  // branch count.
  const branches = (j, depth = 0) =>
    depth > 20 || !j || typeof j !== 'object'
      ? []
      : [j, ...(Array.isArray(j.allOf) ? j.allOf.flatMap((b) => branches(b, depth + 1)) : [])];
  const properties = (j) => {
    const out = {};
    for (const b of branches(j)) {
      for (const [name, sub] of Object.entries(b.properties ?? {})) (out[name] ??= []).push(sub);
    }
    return out;
  };
  const typed = (subs) =>
    subs.flatMap((s) => branches(s)).some(
      (j) => j.type !== undefined || j.const !== undefined || Array.isArray(j.enum) ||
        Array.isArray(j.oneOf) || Array.isArray(j.anyOf),
    );
  const dataProblems = [];
  const typeProblems = [];
  const messages = document.components().messages().all();
  if (messages.length === 0) {
    dataProblems.push('no messages under components.messages');
  }
  for (const m of messages) {
    const label = `${m.id()} (${m.name() ?? 'no name'})`;
    const payload = m.payload();
    if (!payload) {
      dataProblems.push(`${label}: no payload`);
      typeProblems.push(`${label}: no payload`);
      continue;
    }
    const props = properties(payload.json());
    // data
    const data = props.data;
    if (!data) {
      dataProblems.push(`${label}: payload has no \`data\` property`);
    } else {
      const dBranches = data.flatMap((s) => branches(s));
      const dprops = {};
      for (const s of data) Object.assign(dprops, properties(s));
      const names = Object.keys(dprops);
      if (!dBranches.some((j) => j.type === 'object')) {
        dataProblems.push(`${label}: data is not \`type: object\``);
      } else if (names.length === 0) {
        if (!dBranches.some((j) => j.additionalProperties === false)) {
          dataProblems.push(
            `${label}: data has no properties and is not a documented empty object (additionalProperties: false)`,
          );
        }
      } else {
        const untyped = names.filter((n) => !typed(dprops[n]));
        if (untyped.length) dataProblems.push(`${label}: data properties without a type: ${untyped.join(', ')}`);
      }
    }
    // type
    const t = props.type;
    if (!t) {
      typeProblems.push(`${label}: payload has no \`type\` property`);
    } else {
      const singles = new Set();
      for (const j of t.flatMap((s) => branches(s))) {
        if (j.const !== undefined) singles.add(j.const);
        else if (Array.isArray(j.enum) && j.enum.length === 1) singles.add(j.enum[0]);
      }
      const shown = JSON.stringify(t.map((s) => Object.fromEntries(Object.entries(s).filter(([k]) => !k.startsWith('x-parser')))));
      if (singles.size !== 1) {
        typeProblems.push(`${label}: \`type\` is ${shown}, not a const or one-value enum`);
      } else if (m.name() && [...singles][0] !== m.name()) {
        typeProblems.push(`${label}: \`type\` is ${JSON.stringify([...singles][0])}, the message name is ${JSON.stringify(m.name())}`);
      }
    }
  }
  if (dataProblems.length === 0) pass(`asyncapi.payload-data (${messages.length} messages)`);
  else {
    for (const p of dataProblems) console.log(`  ${p}`);
    fail('asyncapi.payload-data', `${dataProblems.length} messages without a typed \`data\``);
  }
  if (typeProblems.length === 0) pass(`asyncapi.payload-type (${messages.length} messages)`);
  else {
    for (const p of typeProblems) console.log(`  ${p}`);
    fail('asyncapi.payload-type', `${typeProblems.length} messages without a single-valued \`type\``);
  }
}
process.exit(failed ? 1 : 0);
